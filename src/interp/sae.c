/*
 * sae.c: sparse autoencoders: forward, training loss and gradients, quality
 * metrics, splicing into a forward and ground-truth recovery (sae.h).
 *
 * Legend: B rows, D d_in, S d_sae, K TopK's k, C a row's entry capacity.
 *
 * Work is split so that no value depends on the thread count: per-row loops
 * (the encoder GEMM on fixed chunks of SAE_CHUNK rows, the activation, the
 * decoder, the entry gradients) write only their rows; per-latent loops (the
 * decoder and encoder gradients) walk their latent's entries in row order;
 * sums across rows are in double, in row order, outside parallel regions or
 * inside one thread's own column.
 */
#include <mechbench/sae.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include <mechbench/gemm.h>

/* Rows per encoder GEMM call: fixed, so the calls (and with a CPU-dependent
 * GEMM backend their bits) do not depend on the thread count. */
#define SAE_CHUNK MB_SAE_CHUNK

/* Loops over less work than this many multiply-adds run on one thread: an
 * OpenMP region costs more than they do on a loaded machine. The choice
 * changes no value (every loop is thread-count invariant). */
#define SAE_PAR_MIN ((size_t)1 << 16)
#define SAE_PAR(work) if ((size_t)(work) >= SAE_PAR_MIN)

const char *mb_sae_arch_name(mb_sae_arch a)
{
	switch (a) {
	case MB_SAE_RELU:
		return "standard";
	case MB_SAE_TOPK:
		return "topk";
	case MB_SAE_JUMPRELU:
		return "jumprelu";
	}
	return "?";
}

size_t mb_sae_param_count(mb_sae_arch arch, int d_in, int d_sae)
{
	size_t D = (size_t)d_in, S = (size_t)d_sae;
	return 2 * D * S + S + D + (arch == MB_SAE_JUMPRELU ? S : 0);
}

void mb_sae_carve(mb_sae *s, float *base)
{
	size_t D = (size_t)s->d_in, S = (size_t)s->d_sae;
	s->W_enc = base;
	s->b_enc = s->W_enc + D * S;
	s->W_dec = s->b_enc + S;
	s->b_dec = s->W_dec + S * D;
	s->threshold = s->arch == MB_SAE_JUMPRELU ? s->b_dec + D : NULL;
}

int mb_sae_init(mb_sae **out, mb_sae_arch arch, int d_in, int d_sae, int k, mb_error *err)
{
	mb_sae *s;

	*out = NULL;
	if (d_in < 1 || d_in > (1 << 20))
		return mb_error_set(err, MB_EINVALID, "sae: d_in = %d must be in [1, 1048576]", d_in);
	if (d_sae < 1 || d_sae > (1 << 24) || (size_t)d_in * (size_t)d_sae > ((size_t)1 << 31))
		return mb_error_set(err, MB_EINVALID,
				    "sae: d_sae = %d must be in [1, 16777216] with d_in * d_sae <= 2^31",
				    d_sae);
	if (arch == MB_SAE_TOPK && (k < 1 || k > d_sae))
		return mb_error_set(err, MB_EINVALID, "sae: k = %d must be in [1, d_sae = %d]", k,
				    d_sae);
	s = calloc(1, sizeof(*s));
	if (!s)
		return mb_error_oom(err, "sae", sizeof(*s));
	s->arch = arch;
	s->d_in = d_in;
	s->d_sae = d_sae;
	s->k = arch == MB_SAE_TOPK ? k : 0;
	s->apply_b_dec_to_input = arch == MB_SAE_TOPK;
	s->prepend_bos = 1;
	s->n_params = mb_sae_param_count(arch, d_in, d_sae);
	s->params = calloc(s->n_params, sizeof(float));
	if (!s->params) {
		free(s);
		return mb_error_oom(err, "sae parameters", 0);
	}
	mb_sae_carve(s, s->params);
	*out = s;
	return 0;
}

void mb_sae_free(mb_sae *s)
{
	if (!s)
		return;
	free(s->params);
	free(s);
}

/* ---- working memory ---- */

void mb_sae_work_dispose(mb_sae_work *w)
{
	free(w->xc);
	free(w->pre);
	free(w->x_hat);
	free(w->x);
	free(w->idx);
	free(w->val);
	free(w->nnz);
	free(w->sse);
	free(w->aidx);
	free(w->aval);
	free(w->annz);
	free(w->aux);
	free(w->de_hat);
	free(w->dpre);
	free(w->dapre);
	free(w->norm);
	free(w->fsum);
	free(w->fired);
	free(w->dsum);
	free(w->csum);
	memset(w, 0, sizeof(*w));
}

int mb_sae_work_init(mb_sae_work *w, const mb_sae *s, int max_rows, int train, mb_error *err)
{
	size_t B = (size_t)max_rows, D = (size_t)s->d_in, S = (size_t)s->d_sae, C, CA;

	memset(w, 0, sizeof(*w));
	if (max_rows < 1)
		return mb_error_set(err, MB_EINVALID, "sae: max_rows = %d must be >= 1", max_rows);
	w->max_rows = max_rows;
	w->train = train != 0;
	w->cap = s->arch == MB_SAE_TOPK ? s->k : s->d_sae;
	w->cap_aux = train && s->arch == MB_SAE_TOPK ? (s->d_in / 2 > 0 ? s->d_in / 2 : 1) : 0;
	C = (size_t)w->cap;
	CA = (size_t)w->cap_aux;
	/* One pre block per thread the forward may use (at most one per chunk). */
	{
		int chunks = (max_rows + SAE_CHUNK - 1) / SAE_CHUNK, th = omp_get_max_threads();
		w->pre_slots = th < 1 ? 1 : th < chunks ? th : chunks;
	}
	/* A training step keeps rows of one group only. */
	if (train) {
		w->group = w->pre_slots * SAE_CHUNK < max_rows ? w->pre_slots * SAE_CHUNK : max_rows;
		B = (size_t)w->group;
	}
	if (B * (C + CA) > (size_t)INT32_MAX)
		return mb_error_set(err, MB_EINVALID,
				    "sae: %zu rows x %zu latents per row exceed 2^31 entries", B,
				    C + CA);
	w->xc = malloc((size_t)w->pre_slots * SAE_CHUNK * D * sizeof(float));
	w->pre = malloc((size_t)w->pre_slots * SAE_CHUNK * S * sizeof(float));
	w->x_hat = malloc(B * D * sizeof(float));
	w->idx = malloc(B * C * sizeof(int32_t));
	w->val = malloc(B * C * sizeof(float));
	w->nnz = calloc(B, sizeof(int32_t));
	w->sse = calloc(B, sizeof(double));
	if (!w->xc || !w->pre || !w->x_hat || !w->idx || !w->val || !w->nnz || !w->sse)
		goto oom;
	if (!train)
		return 0;
	if (CA) {
		w->aidx = malloc(B * CA * sizeof(int32_t));
		w->aval = malloc(B * CA * sizeof(float));
		w->dapre = malloc(B * CA * sizeof(float));
		if (!w->aidx || !w->aval || !w->dapre)
			goto oom;
	}
	w->x = malloc(B * D * sizeof(float));
	w->annz = calloc(B, sizeof(int32_t));
	w->aux = calloc(B, sizeof(double));
	w->de_hat = malloc(B * D * sizeof(float));
	w->dpre = malloc(B * C * sizeof(float));
	w->norm = malloc(S * sizeof(float));
	w->fsum = malloc(S * sizeof(float));
	w->fired = malloc(S);
	w->dsum = malloc(D * sizeof(double));
	w->csum = malloc(D * sizeof(double));
	if (!w->x || !w->annz || !w->aux || !w->de_hat || !w->dpre || !w->norm || !w->fsum || !w->fired ||
	    !w->dsum || !w->csum)
		goto oom;
	return 0;
oom:
	mb_sae_work_dispose(w);
	return mb_error_oom(err, "sae work buffers", 0);
}

/* ---- forward ---- */

/* a ranks above b: larger value, ties to the lower index. */
static int ranks_above(float va, int ia, float vb, int ib)
{
	return va > vb || (va == vb && ia < ib);
}

static int cmp_i32(const void *a, const void *b)
{
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
	return (x > y) - (x < y);
}

/*
 * The k highest-ranked latents of pre (S) among those with mask[j] set (mask
 * NULL: all), by a min-heap of the k best so far (root: the lowest ranked);
 * writes their indices ascending into idx and returns how many (min(k,
 * candidates)).
 */
static int top_k(int32_t *idx, const float *pre, int S, int k, const uint8_t *mask)
{
	int n = 0;

	for (int j = 0; j < S; j++) {
		if (mask && !mask[j])
			continue;
		if (n < k) {
			/* sift up */
			int c = n++;
			idx[c] = j;
			while (c > 0) {
				int p = (c - 1) / 2;
				if (!ranks_above(pre[idx[p]], idx[p], pre[idx[c]], idx[c]))
					break;
				int32_t t = idx[p];
				idx[p] = idx[c];
				idx[c] = t;
				c = p;
			}
		} else if (ranks_above(pre[j], j, pre[idx[0]], idx[0])) {
			/* replace the root, sift down */
			int c = 0;
			idx[0] = j;
			for (;;) {
				int l = 2 * c + 1, r = l + 1, m = c;
				if (l < n && ranks_above(pre[idx[m]], idx[m], pre[idx[l]], idx[l]))
					m = l;
				if (r < n && ranks_above(pre[idx[m]], idx[m], pre[idx[r]], idx[r]))
					m = r;
				if (m == c)
					break;
				int32_t t = idx[m];
				idx[m] = idx[c];
				idx[c] = t;
				c = m;
			}
		}
	}
	qsort(idx, (size_t)n, sizeof(int32_t), cmp_i32);
	return n;
}

/* Row b's activation: its entries (latent, f) from its pre-activations pre (S). */
static void activate_row(const mb_sae *s, mb_sae_work *w, int b, const float *pre)
{
	const int S = s->d_sae;
	int32_t *idx = w->idx + (size_t)b * w->cap;
	float *val = w->val + (size_t)b * w->cap;
	int n = 0;

	if (s->arch == MB_SAE_TOPK) {
		int m = top_k(idx, pre, S, s->k, NULL);
		for (int e = 0; e < m; e++) {
			float v = pre[idx[e]];
			if (v > 0.0f) {
				idx[n] = idx[e];
				val[n++] = v;
			}
		}
	} else {
		for (int j = 0; j < S; j++) {
			float v = pre[j];
			if (v > 0.0f && (s->arch != MB_SAE_JUMPRELU || v > s->threshold[j])) {
				idx[n] = j;
				val[n++] = v;
			}
		}
	}
	w->nnz[b] = n;
}

/* out (D) = sum over entries of v W_dec[j] (in entry order), then + bias
 * when bias is not NULL. */
static void decode_row(float *out, const mb_sae *s, const int32_t *idx, const float *val, int n,
		       const float *bias)
{
	const int D = s->d_in;

	for (int i = 0; i < D; i++)
		out[i] = 0.0f;
	for (int e = 0; e < n; e++) {
		const float *wd = s->W_dec + (size_t)idx[e] * D;
		float v = val[e];
		for (int i = 0; i < D; i++)
			out[i] += v * wd[i];
	}
	if (bias)
		for (int i = 0; i < D; i++)
			out[i] += bias[i];
}

/* The pre-activations pre (rows, S) of rows xr (rows <= SAE_CHUNK, D), one
 * GEMM call; xc (rows, D) receives the centred rows. */
static void encode_chunk(const mb_sae *s, const float *xr, int rows, float *xc, float *pre)
{
	const int D = s->d_in, S = s->d_sae;

	for (int r = 0; r < rows; r++)
		for (int i = 0; i < D; i++)
			xc[(size_t)r * D + i] = s->apply_b_dec_to_input
							? xr[(size_t)r * D + i] - s->b_dec[i]
							: xr[(size_t)r * D + i];
	mb_gemm_sgemm(0, 0, rows, S, D, 1.0f, xc, D, s->W_enc, S, pre, S);
	for (int r = 0; r < rows; r++) {
		float *p = pre + (size_t)r * S;
		for (int j = 0; j < S; j++)
			p[j] += s->b_enc[j];
	}
}

int mb_sae_pre(const mb_sae *s, const float *x, int B, float *pre, mb_error *err)
{
	const int D = s->d_in, S = s->d_sae;
	float *xc = malloc((size_t)SAE_CHUNK * D * sizeof(float));

	if (!xc)
		return mb_error_oom(err, "sae pre-activations", (size_t)SAE_CHUNK * D * sizeof(float));
	for (int r0 = 0; r0 < B; r0 += SAE_CHUNK) {
		int rows = B - r0 < SAE_CHUNK ? B - r0 : SAE_CHUNK;
		encode_chunk(s, x + (size_t)r0 * D, rows, xc, pre + (size_t)r0 * S);
	}
	free(xc);
	return 0;
}

/* Row b's AuxK entries from its pre-activations pre (S): the k_aux
 * highest-ranked dead latents, those above 0. */
static void aux_select_row(mb_sae_work *w, int b, const float *pre, int S, int k_aux,
			   const uint8_t *dead)
{
	int32_t *ai = w->aidx + (size_t)b * w->cap_aux;
	float *av = w->aval + (size_t)b * w->cap_aux;
	int m = top_k(ai, pre, S, k_aux, dead), n = 0;

	for (int e = 0; e < m; e++)
		if (pre[ai[e]] > 0.0f) {
			ai[n] = ai[e];
			av[n++] = pre[ai[e]];
		}
	w->annz[b] = n;
}

/* Rows x (rows, D) as rows b0 .. b0 + rows - 1 of w: the active entries,
 * AuxK's when k_aux > 0 (a training work), x_hat and sse, one encoder GEMM
 * call per SAE_CHUNK rows (chunk c on thread c mod pre_slots's block). */
static void forward_rows(const mb_sae *s, mb_sae_work *w, const float *x, int rows, int b0,
			 int k_aux, const uint8_t *dead)
{
	const int D = s->d_in, S = s->d_sae;
	const int nchunks = (rows + SAE_CHUNK - 1) / SAE_CHUNK;

#pragma omp parallel for schedule(static) num_threads(w->pre_slots) SAE_PAR((size_t)rows * D * S)
	for (int c = 0; c < nchunks; c++) {
		int r0 = c * SAE_CHUNK, n = rows - r0 < SAE_CHUNK ? rows - r0 : SAE_CHUNK;
		const float *xr = x + (size_t)r0 * D;
		float *pre = w->pre + (size_t)omp_get_thread_num() * SAE_CHUNK * S;
		encode_chunk(s, xr, n, w->xc + (size_t)omp_get_thread_num() * SAE_CHUNK * D, pre);
		for (int r = 0; r < n; r++) {
			const int b = b0 + r0 + r;
			const float *p = pre + (size_t)r * S;
			activate_row(s, w, b, p);
			if (w->annz)
				w->annz[b] = 0;
			if (k_aux > 0)
				aux_select_row(w, b, p, S, k_aux, dead);
			float *xh = w->x_hat + (size_t)b * D;
			decode_row(xh, s, w->idx + (size_t)b * w->cap, w->val + (size_t)b * w->cap,
				   w->nnz[b], s->b_dec);
			double sse = 0.0;
			for (int i = 0; i < D; i++) {
				double d = (double)xh[i] - (double)xr[(size_t)r * D + i];
				sse += d * d;
			}
			w->sse[b] = sse;
		}
	}
}

void mb_sae_forward(const mb_sae *s, mb_sae_work *w, const float *x, int B)
{
	MB_ASSERT(!w->train && B >= 1 && B <= w->max_rows);
	forward_rows(s, w, x, B, 0, 0, NULL);
}

/* ---- backward ---- */

static double dot_f(const float *a, const float *b, int n)
{
	double s = 0.0;
	for (int i = 0; i < n; i++)
		s += (double)a[i] * (double)b[i];
	return s;
}

/* The per-row backward of rows 0 .. rows - 1 of the group in w (x: their
 * rows): dL/dx_hat over x_hat (in place, after AuxK read it), AuxK's
 * residual loss and dL/de_hat, and the entries' dL/dpre. */
static void backward_rows(const mb_sae *s, mb_sae_work *w, const float *x, int rows, int k_aux,
			  float two_over_b, float l1w, float aux_g)
{
	const int D = s->d_in, C = w->cap, CA = w->cap_aux;
	const int relu = s->arch == MB_SAE_RELU;

#pragma omp parallel for schedule(static) num_threads(w->pre_slots) \
	SAE_PAR((size_t)rows * (C + CA) * D)
	for (int b = 0; b < rows; b++) {
		const float *xr = x + (size_t)b * D;
		float *xh = w->x_hat + (size_t)b * D;
		w->aux[b] = 0.0;
		if (k_aux > 0) {
			/* e = x - x_hat, e_hat from the forward's AuxK entries */
			const int32_t *ai = w->aidx + (size_t)b * CA;
			const float *av = w->aval + (size_t)b * CA;
			const int n = w->annz[b];
			float *deh = w->de_hat + (size_t)b * D; /* e_hat, then dL/de_hat */
			decode_row(deh, s, ai, av, n, NULL);
			double a = 0.0;
			for (int i = 0; i < D; i++) {
				float e_i = xr[i] - xh[i];
				float r = deh[i] - e_i;
				a += (double)r * (double)r;
				deh[i] = r * aux_g;
			}
			w->aux[b] = a;
			float *dap = w->dapre + (size_t)b * CA;
			for (int e = 0; e < n; e++)
				dap[e] = (float)dot_f(deh, s->W_dec + (size_t)ai[e] * D, D);
		}
		for (int i = 0; i < D; i++)
			xh[i] = (xh[i] - xr[i]) * two_over_b;
		const int32_t *idx = w->idx + (size_t)b * C;
		float *dp = w->dpre + (size_t)b * C;
		for (int e = 0; e < w->nnz[b]; e++) {
			float d = (float)dot_f(xh, s->W_dec + (size_t)idx[e] * D, D);
			dp[e] = relu ? d + l1w * w->norm[idx[e]] : d;
		}
	}
}

/*
 * Adds the group's rows (x: their rows) into the gradients g of W_dec,
 * W_enc and (through w->dsum, w->csum) b_dec, threads over input dimensions:
 * each element's terms arrive in row order, a row's main entries before its
 * AuxK ones. W_enc's gradient and the input path of b_dec's go dimension by
 * dimension over W_enc's row i (contiguous in j), so W_enc is never
 * transposed.
 */
static void accumulate_rows(const mb_sae *s, mb_sae_work *w, const mb_sae *g, const float *x,
			    int rows)
{
	const int D = s->d_in, S = s->d_sae, C = w->cap, CA = w->cap_aux;
	const int a = s->apply_b_dec_to_input;

#pragma omp parallel num_threads(w->pre_slots) SAE_PAR((size_t)rows * (C + CA) * D)
	{
		const int th = omp_get_thread_num(), nth = omp_get_num_threads();
		const int i0 = (int)((int64_t)D * th / nth), i1 = (int)((int64_t)D * (th + 1) / nth);

		/* W_dec[j] += f up, up = dL/dx_hat (main) or dL/de_hat (AuxK) */
		for (int b = 0; b < rows; b++) {
			const float *up = w->x_hat + (size_t)b * D;
			for (int e = 0; e < w->nnz[b]; e++) {
				float *gwd = g->W_dec + (size_t)w->idx[(size_t)b * C + e] * D;
				const float v = w->val[(size_t)b * C + e];
				for (int i = i0; i < i1; i++)
					gwd[i] += v * up[i];
			}
			up = w->de_hat ? w->de_hat + (size_t)b * D : NULL;
			for (int e = 0; e < w->annz[b]; e++) {
				float *gwd = g->W_dec + (size_t)w->aidx[(size_t)b * CA + e] * D;
				const float v = w->aval[(size_t)b * CA + e];
				for (int i = i0; i < i1; i++)
					gwd[i] += v * up[i];
			}
		}
		/* W_enc[i][j] += dpre (x - a b_dec)[i]; d loss / d (x - b_dec)[i]
		 * of a row: its entries' dpre W_enc[i][j], summed in entry order */
		for (int i = i0; i < i1; i++) {
			float *ge = g->W_enc + (size_t)i * S;
			const float *we = s->W_enc + (size_t)i * S;
			double ds = w->dsum[i], cs = w->csum[i];
			for (int b = 0; b < rows; b++) {
				const float xv = a ? x[(size_t)b * D + i] - s->b_dec[i]
						   : x[(size_t)b * D + i];
				const int32_t *idx = w->idx + (size_t)b * C;
				const float *dp = w->dpre + (size_t)b * C;
				float dxc = 0.0f;
				for (int e = 0; e < w->nnz[b]; e++) {
					ge[idx[e]] += dp[e] * xv;
					dxc += dp[e] * we[idx[e]];
				}
				if (w->annz[b] > 0) {
					idx = w->aidx + (size_t)b * CA;
					dp = w->dapre + (size_t)b * CA;
					for (int e = 0; e < w->annz[b]; e++) {
						ge[idx[e]] += dp[e] * xv;
						dxc += dp[e] * we[idx[e]];
					}
				}
				ds += (double)w->x_hat[(size_t)b * D + i];
				cs += (double)dxc;
			}
			w->dsum[i] = ds;
			w->csum[i] = cs;
		}
	}
}

int mb_sae_train_step(mb_sae_loss *out, const mb_sae *s, mb_sae_work *w, mb_sae_source *src,
		      float scale, int B, double lambda, const uint8_t *dead, double aux_coef,
		      float *grad, mb_error *err)
{
	const int D = s->d_in, S = s->d_sae, C = w->cap, CA = w->cap_aux;
	const int relu = s->arch == MB_SAE_RELU;
	mb_sae g;
	int n_dead = 0, k_aux = 0;
	double aux_scale = 0.0, mse = 0.0, sp = 0.0, aux = 0.0, l0 = 0.0;

	memset(out, 0, sizeof(*out));
	if (s->arch == MB_SAE_JUMPRELU)
		return mb_error_set(err, MB_EINVALID,
				    "sae: JumpReLU SAEs are inference only (no training backward)");
	if (!w->train)
		return mb_error_set(err, MB_EINVALID, "sae: work buffers were not made for training");
	if (src->d_in != D)
		return mb_error_set(err, MB_EMISMATCH, "sae: the row source gives %d values per row, "
				    "the SAE's d_in is %d", src->d_in, D);
	MB_ASSERT(B >= 1 && B <= w->max_rows);
	g = *s;
	mb_sae_carve(&g, grad);
	memset(grad, 0, s->n_params * sizeof(float));

	if (s->arch == MB_SAE_TOPK && dead && CA > 0) {
		for (int j = 0; j < S; j++)
			n_dead += dead[j] != 0;
		if (n_dead > 0) {
			k_aux = CA < n_dead ? CA : n_dead;
			aux_scale = (double)n_dead / (double)CA < 1.0 ? (double)n_dead / (double)CA : 1.0;
		}
	}
	out->n_dead = n_dead;
	if (relu) {
		/* Decoder row norms: the L1 weights. */
#pragma omp parallel for schedule(static) SAE_PAR((size_t)S * D)
		for (int j = 0; j < S; j++)
			w->norm[j] = (float)sqrt(dot_f(s->W_dec + (size_t)j * D,
						       s->W_dec + (size_t)j * D, D));
	}
	memset(w->fsum, 0, (size_t)S * sizeof(float));
	memset(w->fired, 0, (size_t)S);
	for (int i = 0; i < D; i++)
		w->dsum[i] = w->csum[i] = 0.0;

	const float two_over_b = (float)(2.0 / (double)B);
	const float l1w = (float)(lambda / (double)B);
	const float aux_g = (float)(2.0 * aux_coef * aux_scale / (double)B);

	for (int g0 = 0; g0 < B; g0 += w->group) {
		const int rows = B - g0 < w->group ? B - g0 : w->group;
		const float *xg = w->x;
		int error = src->next(src->self, w->x, rows, err);
		if (error < 0)
			return error;
		for (size_t i = 0; i < (size_t)rows * D; i++)
			w->x[i] *= scale;
		forward_rows(s, w, xg, rows, 0, k_aux, dead);
		backward_rows(s, w, xg, rows, k_aux, two_over_b, l1w, aux_g);
		/* The loss, b_enc's gradient and the per-latent sums, in row order. */
		for (int b = 0; b < rows; b++) {
			mse += w->sse[b];
			aux += w->aux[b];
			l0 += (double)w->nnz[b];
			for (int e = 0; e < w->nnz[b]; e++) {
				const int32_t j = w->idx[(size_t)b * C + e];
				const float v = w->val[(size_t)b * C + e];
				if (relu)
					sp += (double)v * (double)w->norm[j];
				g.b_enc[j] += w->dpre[(size_t)b * C + e];
				w->fsum[j] += v;
				w->fired[j] = 1;
			}
			for (int e = 0; e < w->annz[b]; e++)
				g.b_enc[w->aidx[(size_t)b * CA + e]] += w->dapre[(size_t)b * CA + e];
		}
		accumulate_rows(s, w, &g, xg, rows);
	}

	if (relu) {
		/* d/dW_dec[j] of (lambda / B) sum_b f_bj |W_dec[j]|, after the rows */
#pragma omp parallel for schedule(static) SAE_PAR((size_t)S * D)
		for (int j = 0; j < S; j++) {
			if (!(w->norm[j] > 0.0f))
				continue;
			float c = l1w * w->fsum[j] / w->norm[j];
			const float *wd = s->W_dec + (size_t)j * D;
			float *gwd = g.W_dec + (size_t)j * D;
			for (int i = 0; i < D; i++)
				gwd[i] += c * wd[i];
		}
	}
	/* b_dec: through x_hat, and through x - b_dec when applied to the input. */
	for (int i = 0; i < D; i++)
		g.b_dec[i] = (float)(w->dsum[i] - (s->apply_b_dec_to_input ? w->csum[i] : 0.0));

	out->mse = mse / B;
	out->sparse = relu ? lambda * sp / B : 0.0;
	out->aux = aux_coef * aux_scale * aux / B;
	out->total = out->mse + out->sparse + out->aux;
	out->l0 = l0 / B;
	return 0;
}

/* ---- metrics ---- */

int mb_sae_stats_init(mb_sae_stats *st, int d_in, int d_sae, mb_error *err)
{
	memset(st, 0, sizeof(*st));
	st->d_in = d_in;
	st->d_sae = d_sae;
	st->sum_x = calloc((size_t)d_in, sizeof(double));
	st->fires = calloc((size_t)d_sae, sizeof(int64_t));
	if (!st->sum_x || !st->fires) {
		mb_sae_stats_dispose(st);
		return mb_error_oom(err, "sae statistics", 0);
	}
	return 0;
}

void mb_sae_stats_dispose(mb_sae_stats *st)
{
	free(st->sum_x);
	free(st->fires);
	memset(st, 0, sizeof(*st));
}

double mb_sae_cos(const float *x, const float *y, int D)
{
	double xy = 0.0, xx = 0.0, yy = 0.0;
	for (int i = 0; i < D; i++) {
		xy += (double)x[i] * (double)y[i];
		xx += (double)x[i] * (double)x[i];
		yy += (double)y[i] * (double)y[i];
	}
	if (xx == 0.0 && yy == 0.0)
		return 1.0;
	if (xx == 0.0 || yy == 0.0)
		return 0.0;
	return xy / (sqrt(xx) * sqrt(yy));
}

void mb_sae_stats_add(mb_sae_stats *st, const mb_sae_work *w, const float *x, int B)
{
	const int D = st->d_in;

	for (int b = 0; b < B; b++) {
		const float *xr = x + (size_t)b * D;
		st->sum_l0 += (double)w->nnz[b];
		st->sum_sse += w->sse[b];
		st->sum_cos += mb_sae_cos(xr, w->x_hat + (size_t)b * D, D);
		for (int i = 0; i < D; i++) {
			st->sum_sq += (double)xr[i] * (double)xr[i];
			st->sum_x[i] += (double)xr[i];
		}
		for (int e = 0; e < w->nnz[b]; e++)
			st->fires[w->idx[(size_t)b * w->cap + e]]++;
	}
	st->tokens += B;
}

void mb_sae_stats_finish(mb_sae_stats_result *out, const mb_sae_stats *st)
{
	double n = (double)st->tokens, mean_sq = 0.0;
	int64_t dead = 0, dense = 0;

	memset(out, 0, sizeof(*out));
	out->tokens = st->tokens;
	if (st->tokens == 0)
		return;
	for (int i = 0; i < st->d_in; i++) {
		double m = st->sum_x[i] / n;
		mean_sq += m * m;
	}
	double total_var = st->sum_sq / n - mean_sq;
	out->l0 = st->sum_l0 / n;
	out->fve = total_var > 0.0 ? 1.0 - (st->sum_sse / n) / total_var : 0.0;
	out->mse = st->sum_sse / (n * st->d_in);
	out->cos = st->sum_cos / n;
	for (int j = 0; j < st->d_sae; j++) {
		dead += st->fires[j] == 0;
		dense += (double)st->fires[j] > 0.1 * n;
	}
	out->dead = (double)dead / st->d_sae;
	out->dense = (double)dense / st->d_sae;
}

/* ---- splicing ---- */

int mb_sae_rows_gather(float *rows, int *n, const mb_hook_tensor *t, int d_in, mb_error *err)
{
	mb_hook_kind k = t->point.kind;
	char name[MB_HOOK_NAME_MAX];
	size_t width;

	*n = 0;
	mb_hook_name(name, sizeof(name), t->point);
	if (k == MB_HOOK_ATTN_SCORES || k == MB_HOOK_PATTERN || k == MB_HOOK_LOGITS)
		return mb_error_set(err, MB_EINVALID,
				    "%s: an SAE reads (batch, position, ...) points, not attention "
				    "matrices or logits",
				    name);
	width = t->numel / ((size_t)t->batch * (size_t)t->seq);
	if (width != (size_t)d_in)
		return mb_error_set(err, MB_EMISMATCH,
				    "%s: %zu values per position, but the SAE's d_in is %d", name,
				    width, d_in);
	for (int b = 0; b < t->batch; b++) {
		int len = t->lengths ? t->lengths[b] : t->seq;
		for (int p = 0; p < len; p++) {
			memcpy(rows + (size_t)(*n) * width,
			       t->data + ((size_t)b * t->seq + p) * width, width * sizeof(float));
			(*n)++;
		}
	}
	return 0;
}

int mb_sae_splice_hook(const mb_hook_tensor *t, void *payload, mb_error *err)
{
	mb_sae_splice *sp = payload;
	const int D = sp->sae->d_in;
	int n, r = 0, error;

	if ((error = mb_sae_rows_gather(sp->rows, &n, t, D, err)) < 0)
		return error;
	if (n > sp->work->max_rows)
		return mb_error_set(err, MB_EINVALID, "sae splice: %d positions exceed the work's %d rows",
				    n, sp->work->max_rows);
	if (n > 0 && sp->mode == MB_SAE_SPLICE_RECONSTRUCT)
		mb_sae_forward(sp->sae, sp->work, sp->rows, n);
	for (int b = 0; b < t->batch; b++) {
		int len = t->lengths ? t->lengths[b] : t->seq;
		for (int p = 0; p < len; p++, r++) {
			float *dst = t->data + ((size_t)b * t->seq + p) * (size_t)D;
			if (sp->mode == MB_SAE_SPLICE_RECONSTRUCT)
				memcpy(dst, sp->work->x_hat + (size_t)r * D, (size_t)D * sizeof(float));
			else
				memset(dst, 0, (size_t)D * sizeof(float));
		}
	}
	return 0;
}

/* ---- ground truth ---- */

int mb_sae_recovery(double *mmcs, double *recovered, double *max_cos, const mb_sae *s,
		    const float *truth, int n, mb_error *err)
{
	const int D = s->d_in, S = s->d_sae;
	double *best = calloc((size_t)(n > 0 ? n : 1), sizeof(double));
	double *dn = malloc((size_t)S * sizeof(double));
	double sum = 0.0;
	int hit = 0;

	if (!best || !dn) {
		free(best);
		free(dn);
		return mb_error_oom(err, "sae recovery", (size_t)S * sizeof(double));
	}
	for (int j = 0; j < S; j++)
		dn[j] = sqrt(dot_f(s->W_dec + (size_t)j * D, s->W_dec + (size_t)j * D, D));
#pragma omp parallel for schedule(static) SAE_PAR((size_t)n * S * D)
	for (int i = 0; i < n; i++) {
		const float *t = truth + (size_t)i * D;
		double tn = sqrt(dot_f(t, t, D)), m = -1.0;
		for (int j = 0; j < S; j++) {
			if (dn[j] == 0.0 || tn == 0.0)
				continue;
			double c = dot_f(t, s->W_dec + (size_t)j * D, D) / (tn * dn[j]);
			if (c > m)
				m = c;
		}
		best[i] = m;
	}
	for (int i = 0; i < n; i++) {
		sum += best[i];
		hit += best[i] >= 0.9;
		if (max_cos)
			max_cos[i] = best[i];
	}
	*mmcs = n > 0 ? sum / n : 0.0;
	*recovered = n > 0 ? (double)hit / n : 0.0;
	free(best);
	free(dn);
	return 0;
}

/* ---- matching latents to known variables ---- */

typedef struct ranked {
	float v;
	uint32_t i;
} ranked;

static int cmp_ranked(const void *a, const void *b)
{
	const ranked *x = a, *y = b;
	if (x->v != y->v)
		return x->v < y->v ? -1 : 1;
	return (x->i > y->i) - (x->i < y->i);
}

int mb_sae_auroc(double *out, const float *score, size_t stride, const uint8_t *labels,
		 int n_labels, size_t n, mb_error *err)
{
	ranked *r;

	for (int v = 0; v < n_labels; v++)
		out[v] = NAN;
	if (n == 0)
		return 0;
	r = malloc(n * sizeof(*r));
	if (!r)
		return mb_error_oom(err, "auroc ranks", n * sizeof(*r));
	for (size_t i = 0; i < n; i++) {
		r[i].v = score[i * stride];
		r[i].i = (uint32_t)i;
	}
	qsort(r, n, sizeof(*r), cmp_ranked);
	for (int v = 0; v < n_labels; v++) {
		const uint8_t *label = labels + (size_t)v * n;
		double npos = 0, nneg = 0, rank_sum = 0, seen = 0;
		for (size_t a = 0; a < n;) {
			size_t b = a;
			double m = 0;
			while (b < n && r[b].v == r[a].v)
				m += label[r[b++].i] != MB_SAE_LABEL_SKIP;
			/* the tie's counted rows take ranks seen + 1 .. seen + m */
			double avg = seen + 0.5 * (m + 1);
			for (size_t k = a; k < b; k++) {
				uint8_t l = label[r[k].i];
				if (l == MB_SAE_LABEL_SKIP)
					continue;
				if (l) {
					rank_sum += avg;
					npos += 1;
				} else {
					nneg += 1;
				}
			}
			seen += m;
			a = b;
		}
		if (npos > 0 && nneg > 0)
			out[v] = (rank_sum - npos * (npos + 1) / 2) / (npos * nneg);
	}
	free(r);
	return 0;
}

double mb_sae_f1(const float *score, size_t stride, const uint8_t *label, size_t n)
{
	double tp = 0, fp = 0, fn = 0;
	for (size_t i = 0; i < n; i++) {
		int fire = score[i * stride] > 0.0f;
		if (label[i] == MB_SAE_LABEL_SKIP)
			continue;
		tp += fire && label[i];
		fp += fire && !label[i];
		fn += !fire && label[i];
	}
	return tp > 0 ? 2 * tp / (2 * tp + fp + fn) : 0.0;
}
