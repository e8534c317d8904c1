/* engine_fx.c: see engine_fx.h. */
#include "engine_fx.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const fx_models[FX_N_MODELS] = {"gpt2_ln_gelu", "attn_only", "noln_relu_untied",
						"neox_par", "neox_seq"};

/* The fixture folder of a model (or of a path starting with its name). */
static const char *fx_base(const char *name)
{
	return strncmp(name, "neox", 4) == 0 ? FX_NEOX_DIR : FX_ENGINE_DIR;
}

mb_model *fx_model(const char *name)
{
	char dir[1024];
	mb_model *m = NULL;
	mb_error err = {0};

	snprintf(dir, sizeof(dir), "%s/models/%s", fx_base(name), name);
	cr_assert_eq(mb_model_load(&m, dir, &err), 0, "%s", err.msg);
	return m;
}

static int32_t *as_i32(const mb_npy *a)
{
	int32_t *v = malloc(sizeof(int32_t) * (a->numel ? a->numel : 1));

	cr_assert(v);
	for (size_t i = 0; i < a->numel; i++) {
		if (a->dtype == MB_DTYPE_I64)
			v[i] = (int32_t)((const int64_t *)a->data)[i];
		else if (a->dtype == MB_DTYPE_I32)
			v[i] = ((const int32_t *)a->data)[i];
		else
			cr_assert_fail("token array of dtype %d", (int)a->dtype);
	}
	return v;
}

void fx_batch(const char *model, const char *batch, int32_t **tokens, int32_t **lengths, int *B,
	      int *T)
{
	char path[1024];
	mb_npy a;
	mb_error err = {0};

	snprintf(path, sizeof(path), "%s/%s/%s/tokens.npy", fx_base(model), model, batch);
	cr_assert_eq(mb_npy_read(&a, path, &err), 0, "%s", err.msg);
	cr_assert_eq(a.ndim, 2);
	*B = (int)a.shape[0];
	*T = (int)a.shape[1];
	*tokens = as_i32(&a);
	mb_npy_dispose(&a);
	snprintf(path, sizeof(path), "%s/%s/%s/lengths.npy", fx_base(model), model, batch);
	cr_assert_eq(mb_npy_read(&a, path, &err), 0, "%s", err.msg);
	*lengths = as_i32(&a);
	mb_npy_dispose(&a);
}

void fx_npy(mb_npy *out, const char *rel)
{
	char path[1024];
	mb_error err = {0};

	snprintf(path, sizeof(path), "%s/%s", fx_base(rel), rel);
	cr_assert_eq(mb_npy_read_f32(out, path, &err), 0, "%s", err.msg);
}

int32_t *fx_source_tokens(const char *model)
{
	mb_npy a;
	char rel[256];
	int32_t *out;

	snprintf(rel, sizeof(rel), "%s/batch0/interventions/source_tokens.npy", model);
	fx_npy(&a, rel);
	out = malloc(sizeof(int32_t) * a.numel);
	cr_assert_not_null(out);
	for (size_t i = 0; i < a.numel; i++)
		out[i] = (int32_t)((float *)a.data)[i];
	mb_npy_dispose(&a);
	return out;
}

mb_engine *fx_engine(const mb_model *m, int max_batch, int max_seq, int keep)
{
	mb_engine *e = NULL;
	mb_error err = {0};
	mb_engine_opts o = {max_batch, max_seq, keep};

	cr_assert_eq(mb_engine_init(&e, &m->cfg, &m->w, &o, &err), 0, "%s", err.msg);
	return e;
}

long fx_compare(const char *label, const float *got, const mb_npy *want, const int32_t *lengths,
		int attn_layout, double atol, double rtol, double *max_diff)
{
	const float *w = want->data;
	size_t B = (size_t)want->shape[0], inner = 1, per_b = want->numel / B;
	long bad = 0;
	double mx = 0.0;
	size_t worst = 0;

	for (int i = 2; i < want->ndim; i++)
		inner *= (size_t)want->shape[i];
	for (size_t b = 0; b < B; b++) {
		for (size_t i = 0; i < per_b; i++) {
			size_t flat = b * per_b + i, t;
			double d;

			if (attn_layout) {
				size_t T = (size_t)want->shape[2];
				t = (i / T) % T; /* query row */
			} else {
				t = i / inner;
			}
			if ((int32_t)t >= lengths[b])
				continue;
			if (isinf(w[flat]) && got[flat] == w[flat])
				continue;
			d = fabs((double)got[flat] - (double)w[flat]);
			if (!(d <= atol + rtol * fabs((double)w[flat])))
				bad++;
			if (!(d <= mx)) {
				mx = d;
				worst = flat;
			}
		}
	}
	printf("%-44s max |diff| = %.3g (at flat %zu)%s\n", label, mx, worst,
	       bad ? "  OUT OF TOLERANCE" : "");
	if (max_diff)
		*max_diff = mx;
	return bad;
}

mb_run fx_run(const int32_t *tokens, const int32_t *lengths, int B, int T)
{
	mb_run r;

	memset(&r, 0, sizeof(r));
	r.batch = B;
	r.seq = T;
	r.tokens = tokens;
	r.lengths = lengths;
	r.logits = MB_LOGITS_ALL;
	return r;
}
