/*
 * facts_zoo: the committed zoo facts model (baselines/models/facts), read,
 * never trained:
 *  - its files match its MANIFEST, which names the facts recipe;
 *  - it knows its facts: top-1 recall of every (subject, relation) on every
 *    training template >= the recipe's check, and on the held-out templates
 *    (printed) above a floor below what was measured (zoo_facts.c);
 *  - causal tracing (edit.h, Meng et al. 2022 sec. 2) of its facts finds
 *    where ROME should edit: restoring one layer's MLP output at the last
 *    subject token has its largest average indirect effect at
 *    FACTS_DECISIVE_LAYER (layer 0 of 4 in this model, not a middle layer
 *    as in GPT-2 XL: zoo_facts.c), that effect is clearly above zero (its
 *    95% CI) and the last layer's is nil.
 * The knowledge base and the prompts come from the library (zoo.h,
 * facts_requests.h), the tokens from the model's own tokenizer, so the test
 * also checks that the committed tokenizer spells the recipe's language.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/edit.h>
#include <mechbench/logits.h>
#include <mechbench/model.h>
#include <mechbench/tokenizer.h>
#include <mechbench/zoo.h>

#define FACTS_DIR MB_SOURCE_DIR "/baselines/models/facts"

/* Measured on the committed model (zoo_facts.c's preset comment). */
#define FACTS_DECISIVE_LAYER 0
#define FACTS_HELDOUT_FLOOR 0.90
#define FACTS_TRACE_N 16 /* facts traced: subjects 0..15, relation s % R, template 0 */

typedef struct facts_fx {
	mb_model *m;
	mb_engine *e;
	mb_zoo_recipe r;
	mb_zoo_facts *kb;
} facts_fx;

static void fx_open(facts_fx *f, int max_batch)
{
	mb_engine_opts eo = {.max_batch = max_batch, .max_seq = 32};
	mb_error err = {0};

	memset(f, 0, sizeof(*f));
	cr_assert_eq(mb_model_load(&f->m, FACTS_DIR, &err), 0, "%s", err.msg);
	cr_assert_not_null(f->m->tok, "the committed model has a tokenizer");
	cr_assert_eq(mb_engine_init(&f->e, &f->m->cfg, &f->m->w, &eo, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_zoo_recipe_get(&f->r, "facts", "fast", 0, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_zoo_facts_init(&f->kb, &f->r, &err), 0, "%s", err.msg);
}

static void fx_close(facts_fx *f)
{
	mb_zoo_facts_free(f->kb);
	mb_engine_free(f->e);
	mb_model_free(f->m);
}

/* [BOS] + the template of (r, t) with subject s; the subject's first and
 * last token positions; the object's token. Returns the length. */
static int encode(int32_t *out, int *first, int *last, int32_t *answer, const facts_fx *f, int s,
		  int r, int t)
{
	char text[256];
	const char *tm = mb_zoo_facts_template(f->kb, r, t), *at = strstr(tm, "{}");
	int32_t *tok = NULL;
	int n = 0, ns = 0;
	mb_error err = {0};

	cr_assert_not_null(at);
	/* Tokens before the subject, then up to its end, then the whole. */
	snprintf(text, sizeof(text), "%.*s%s", (int)(at - tm), tm, mb_zoo_facts_subject(f->kb, s));
	cr_assert_eq(mb_tokenizer_encode(f->m->tok, text, &tok, &ns, &err), 0, "%s", err.msg);
	free(tok);
	snprintf(text, sizeof(text), "%.*s%s%s", (int)(at - tm), tm, mb_zoo_facts_subject(f->kb, s),
		 at + 2);
	cr_assert_eq(mb_tokenizer_encode(f->m->tok, text, &tok, &n, &err), 0, "%s", err.msg);
	cr_assert_lt(n + 1, 32);
	out[0] = 0; /* <bos> */
	memcpy(out + 1, tok, (size_t)n * sizeof(*tok));
	free(tok);
	*last = ns; /* 1 + (ns - 1) with [BOS] */
	/* The subject has 2 or 3 tokens. */
	*first = ns - (int)(strchr(strchr(mb_zoo_facts_subject(f->kb, s), ' ') + 1, ' ') ? 2 : 1);
	snprintf(text, sizeof(text), " %s", mb_zoo_facts_object(r, mb_zoo_facts_object_of(f->kb, s, r)));
	cr_assert_eq(mb_tokenizer_encode(f->m->tok, text, &tok, &ns, &err), 0, "%s", err.msg);
	cr_assert_eq(ns, 1, "an object is one token");
	*answer = tok[0];
	free(tok);
	return n + 1;
}

Test(facts_zoo, committed_model_matches_its_manifest)
{
	mb_zoo_manifest man;
	mb_error err = {0};

	cr_assert_eq(mb_zoo_manifest_read(&man, FACTS_DIR "/MANIFEST", &err), 0, "%s", err.msg);
	cr_expect_str_eq(man.name, "facts");
	cr_expect_str_eq(man.preset, "fast");
	cr_expect_eq(man.seed, 0);
	cr_expect_eq(mb_zoo_manifest_check(&man, FACTS_DIR, &err), 0, "%s", err.msg);
}

Test(facts_zoo, knows_its_facts_on_training_templates_and_most_on_held_out_ones)
{
	facts_fx f;
	const int R = mb_zoo_facts_relations(), K = mb_zoo_facts_templates();
	int32_t tok[48][32], rows[48 * 32], len[48], answer[48];
	double hit[2] = {0}, cnt[2] = {0};
	mb_error err = {0};

	cr_assert_leq(R * K, 48);
	fx_open(&f, R * K);
	/* One batch per subject: every relation and template, packed at the
	 * longest prompt's length (the engine reads each row's last token). */
	for (int s = 0; s < mb_zoo_facts_subjects(f.kb); s++) {
		int seq = 0;
		for (int i = 0; i < R * K; i++) {
			int first, last;
			len[i] = encode(tok[i], &first, &last, &answer[i], &f, s, i / K, i % K);
			seq = len[i] > seq ? len[i] : seq;
		}
		for (int i = 0; i < R * K; i++)
			for (int j = 0; j < seq; j++)
				rows[i * seq + j] = j < len[i] ? tok[i][j] : 0;
		mb_run run = {.batch = R * K, .seq = seq, .tokens = rows, .lengths = len,
			      .logits = MB_LOGITS_LAST};
		cr_assert_eq(mb_engine_forward(f.e, &run, &err), 0, "%s", err.msg);
		for (int i = 0; i < R * K; i++) {
			int h = mb_zoo_facts_is_heldout(i / K, i % K);
			hit[h] += mb_logits_argmax(mb_engine_logits_row(f.e, i, 0),
						   f.m->cfg.n_vocab) == answer[i];
			cnt[h]++;
		}
	}
	printf("facts_zoo: top-1 recall %.4f on %g training-template prompts, %.4f on %g "
	       "held-out-template prompts\n", hit[0] / cnt[0], cnt[0], hit[1] / cnt[1], cnt[1]);
	cr_expect_geq(hit[0] / cnt[0], f.r.check_fact_acc);
	cr_expect_geq(hit[1] / cnt[1], FACTS_HELDOUT_FLOOR);
	fx_close(&f);
}

Test(facts_zoo, causal_tracing_finds_the_facts_in_the_decisive_mlp_at_the_last_subject_token)
{
	facts_fx f;
	const int R = mb_zoo_facts_relations(), L = 4, S = 10;
	double aie[4][FACTS_TRACE_N], restored[4 * 32], pc, px, sd;
	int32_t tok[32], answer;
	int32_t subj_tok[FACTS_TRACE_N * 3];
	size_t nsub = 0;
	mb_error err = {0};

	fx_open(&f, S + 1);
	cr_assert_eq(f.m->cfg.n_layer, L);
	/* The noise: 3 x the SD of the subjects' token embeddings (the paper). */
	for (int s = 0; s < FACTS_TRACE_N; s++) {
		int first, last, n = encode(tok, &first, &last, &answer, &f, s, s % R, 0);
		(void)n;
		for (int i = first; i <= last; i++)
			subj_tok[nsub++] = tok[i];
	}
	sd = mb_trace_embed_sd(&f.m->cfg, &f.m->w, subj_tok, nsub);
	mb_trace_opts o = {.seed = 0, .noise = 3 * sd, .samples = S, .window = 1};
	for (int s = 0; s < FACTS_TRACE_N; s++) {
		int first, last, n = encode(tok, &first, &last, &answer, &f, s, s % R, 0);
		mb_trace_item it = {.tokens = tok, .len = n, .subj_first = first, .subj_last = last,
				    .target = answer, .stream = (uint64_t)s};
		cr_assert_eq(mb_trace_run(restored, &pc, &px, f.e, &it, MB_TRACE_MLP, &o, &err), 0,
			     "%s", err.msg);
		for (int l = 0; l < L; l++)
			aie[l][s] = restored[l * n + last] - px;
	}
	int best = 0;
	double mean[4], se[4];
	for (int l = 0; l < L; l++) {
		double m = 0, v = 0;
		for (int s = 0; s < FACTS_TRACE_N; s++)
			m += aie[l][s];
		m /= FACTS_TRACE_N;
		for (int s = 0; s < FACTS_TRACE_N; s++)
			v += (aie[l][s] - m) * (aie[l][s] - m);
		mean[l] = m;
		se[l] = sqrt(v / (FACTS_TRACE_N - 1) / FACTS_TRACE_N);
		printf("facts_zoo: MLP %d at the last subject token: AIE %.4f (SE %.4f)\n", l, m,
		       se[l]);
		if (m > mean[best])
			best = l;
	}
	cr_expect_eq(best, FACTS_DECISIVE_LAYER, "decisive layer %d", best);
	cr_expect_gt(mean[best] - 2.13 * se[best], 0.05, "the effect is clearly positive");
	cr_expect_lt(fabs(mean[L - 1]), 0.01, "the last MLP at the subject reaches nothing");
	fx_close(&f);
}
