/*
 * ioi_planted.c: the hand-set `ioi-planted` model (ioi_planted.h has the
 * construction and the residual layout).
 *
 * Shape letters: V vocab, P positions, D d_model, L layers, H heads, Dh
 * d_head.
 */
#include <mechbench/ioi_planted.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/buildinfo.h>
#include <mechbench/checkpoint.h>
#include <mechbench/ioi_prompts.h>
#include <mechbench/sha256.h>
#include <mechbench/zoo.h>

enum {
	NN = MB_IOI_PLANTED_NAMES,
	L = 3, H = 4, DH = 64, D = H * DH, P = 32,
	TOK = 0, DUP = NN, SINH = 2 * NN, OUT = 3 * NN, POS = 4 * NN,
	F_NAME = POS + P, F_CONST, F_DUP, JUNK,
	JUNK_W = NN + 1, /* one distractor's slice: a name identity and one flag */
};

#define A 32.0f          /* score gap, after the 1/sqrt(Dh) scale */
#define QS 8.0f          /* sqrt(Dh): query weights carry it */
#define LOGIT_SCALE 4.0f /* logit(name n) = LOGIT_SCALE OUT[n] */

const char *const mb_ioi_planted_files[MB_IOI_PLANTED_N_FILES] = {
	"README.md", "circuit.json", "config.json", "model.safetensors", "tokenizer.json",
};

/* Weight setters in the engine layout (engine.h): head h of layer l, its
 * d-th query / key / value unit reads residual dimension r with weight x;
 * its d-th output unit writes residual dimension r. */
static void set_q(mb_engine_weights *w, int l, int h, int d, int r, float x)
{
	w->qkv_w[((size_t)l * D + r) * 3 * D + (size_t)h * DH + d] = x;
}

static void set_k(mb_engine_weights *w, int l, int h, int d, int r, float x)
{
	w->qkv_w[((size_t)l * D + r) * 3 * D + D + (size_t)h * DH + d] = x;
}

static void set_v(mb_engine_weights *w, int l, int h, int d, int r, float x)
{
	w->qkv_w[((size_t)l * D + r) * 3 * D + 2 * D + (size_t)h * DH + d] = x;
}

static void set_o(mb_engine_weights *w, int l, int h, int d, int r, float x)
{
	w->o_w[((size_t)l * D + (size_t)h * DH + d) * D + r] = x;
}

/* Value: the name identity at `from` (NN dims) and, when flag >= 0, that
 * residual dimension in unit NN; written to the residual at `to` (NN dims)
 * and flag_to. */
static void copy_names(mb_engine_weights *w, int l, int h, int from, int to, int flag,
		       int flag_to)
{
	for (int n = 0; n < NN; n++) {
		set_v(w, l, h, n, from + n, 1.0f);
		set_o(w, l, h, n, to + n, 1.0f);
	}
	if (flag >= 0) {
		set_v(w, l, h, NN, flag, 1.0f);
		set_o(w, l, h, NN, flag_to, 1.0f);
	}
}

/* A distractor's junk slice (k-th distractor). */
static int junk(int k)
{
	return JUNK + (k % ((D - JUNK) / JUNK_W)) * JUNK_W;
}

/* Query reads CONST (times s): with a key weight c on dimension r, the score
 * is c x[r] of the key position. */
static void const_query(mb_engine_weights *w, int l, int h, int d, float s)
{
	set_q(w, l, h, d, F_CONST, QS * s);
}

static void set_heads(mb_engine_weights *w)
{
	/* a0.0 duplicate token: A [same name] - A [j = i] + A/2 [j = 0] */
	for (int n = 0; n < NN; n++) {
		set_q(w, 0, 0, n, TOK + n, QS * A);
		set_k(w, 0, 0, n, TOK + n, 1.0f);
	}
	for (int p = 0; p < P; p++) {
		set_q(w, 0, 0, NN + p, POS + p, QS * A);
		set_k(w, 0, 0, NN + p, POS + p, -1.0f);
	}
	const_query(w, 0, 0, NN + P, 1.0f);
	set_k(w, 0, 0, NN + P, POS + 0, A / 2);
	copy_names(w, 0, 0, TOK, DUP, F_NAME, F_DUP);

	/* a1.0 S-inhibition: A DUPflag(j) + A/2 [j = 0]; moves DUP into SINH */
	const_query(w, 1, 0, 0, 1.0f);
	set_k(w, 1, 0, 0, F_DUP, A);
	set_k(w, 1, 0, 0, POS + 0, A / 2);
	copy_names(w, 1, 0, DUP, SINH, -1, 0);

	/* a2.0 name mover: A NAME(j) - 2A SINH(i).TOK(j); copies TOK into OUT */
	const_query(w, 2, 0, 0, A);
	set_k(w, 2, 0, 0, F_NAME, 1.0f);
	for (int n = 0; n < NN; n++) {
		set_q(w, 2, 0, 1 + n, SINH + n, -QS * 2 * A);
		set_k(w, 2, 0, 1 + n, TOK + n, 1.0f);
	}
	copy_names(w, 2, 0, TOK, OUT, -1, 0);

	/* distractors: every one writes only its JUNK slice */
	/* a0.1 previous token: A [j = i - 1] */
	for (int p = 0; p + 1 < P; p++) {
		set_q(w, 0, 1, p, POS + p + 1, QS * A);
		set_k(w, 0, 1, p, POS + p, 1.0f);
	}
	copy_names(w, 0, 1, TOK, junk(0), F_CONST, junk(0) + NN);
	/* a0.2 uniform over the prefix */
	copy_names(w, 0, 2, TOK, junk(1), F_NAME, junk(1) + NN);
	/* a0.3 same name, itself included */
	for (int n = 0; n < NN; n++) {
		set_q(w, 0, 3, n, TOK + n, QS * A);
		set_k(w, 0, 3, n, TOK + n, 1.0f);
	}
	copy_names(w, 0, 3, TOK, junk(2), F_NAME, junk(2) + NN);
	/* a1.1 names */
	const_query(w, 1, 1, 0, A);
	set_k(w, 1, 1, 0, F_NAME, 1.0f);
	copy_names(w, 1, 1, TOK, junk(3), -1, 0);
	/* a1.2 the DUP flag, as a1.0 attends, reading DUP */
	const_query(w, 1, 2, 0, 1.0f);
	set_k(w, 1, 2, 0, F_DUP, A);
	set_k(w, 1, 2, 0, POS + 0, A / 2);
	copy_names(w, 1, 2, DUP, junk(4), F_DUP, junk(4) + NN);
	/* a1.3 position 0 */
	const_query(w, 1, 3, 0, A);
	set_k(w, 1, 3, 0, POS + 0, 1.0f);
	copy_names(w, 1, 3, TOK, junk(0), F_CONST, junk(0) + NN);
	/* a2.1 names, no suppression */
	const_query(w, 2, 1, 0, A);
	set_k(w, 2, 1, 0, F_NAME, 1.0f);
	copy_names(w, 2, 1, TOK, junk(1), -1, 0);
	/* a2.2 names with the subject suppressed, as a2.0 */
	const_query(w, 2, 2, 0, A);
	set_k(w, 2, 2, 0, F_NAME, 1.0f);
	for (int n = 0; n < NN; n++) {
		set_q(w, 2, 2, 1 + n, SINH + n, -QS * 2 * A);
		set_k(w, 2, 2, 1 + n, TOK + n, 1.0f);
	}
	copy_names(w, 2, 2, TOK, junk(2), -1, 0);
	/* a2.3: zero */
}

/* The vocabulary: <bos>, <unk>, then mb_ioi_vocab's words but the names
 * after the first NN. *toks (V) points into *words (mb_ioi_vocab's block);
 * free() both. names_id[n] gets the token id of name n. */
static int vocab(char ***toks, char ***words, int *V, int32_t names_id[NN], mb_error *err)
{
	size_t nw = 0, n_names = 0;
	const char *const *names = mb_ioi_words(MB_IOI_NAMES, &n_names);
	int error, k = 0;

	if ((error = mb_ioi_vocab(words, &nw, "WhitespaceSplit", err)) < 0)
		return error;
	*toks = calloc(nw + 2, sizeof(**toks));
	if (!*toks) {
		free(*words);
		*words = NULL;
		return mb_error_oom(err, "ioi-planted vocabulary", (nw + 2) * sizeof(**toks));
	}
	(*toks)[k++] = "<bos>";
	(*toks)[k++] = "<unk>";
	for (int n = 0; n < NN; n++)
		names_id[n] = -1;
	for (size_t i = 0; i < nw; i++) {
		size_t j;
		for (j = 0; j < n_names; j++)
			if (strcmp((*words)[i], names[j]) == 0)
				break;
		if (j < n_names && j >= NN)
			continue;
		if (j < n_names)
			names_id[j] = k;
		(*toks)[k++] = (*words)[i];
	}
	*V = k;
	for (int n = 0; n < NN; n++)
		MB_ASSERT(names_id[n] >= 0);
	return 0;
}

static json_t *circuit_json(void)
{
	static const struct {
		const char *id, *role;
		int layer;
	} nodes[] = {
		{"a0.0", "duplicate-token", 0},
		{"a1.0", "s-inhibition", 1},
		{"a2.0", "name-mover", 2},
	};
	static const struct {
		const char *from, *to, *via, *what;
	} edges[] = {
		{"a0.0", "a1.0", "k", "the duplicate flag at S2"},
		{"a0.0", "a1.0", "v", "the identity of the duplicated name at S2"},
		{"a1.0", "a2.0", "q", "the subject's identity at the end, suppressing S"},
	};
	json_t *doc = json_pack("{s:s, s:i, s:s, s:s}", "kind", "circuit", "version", 1, "method",
				"planted", "model", MB_IOI_PLANTED_NAME);
	json_t *jn = json_array(), *je = json_array();
	int bad = !doc || !jn || !je;

	for (size_t i = 0; i < sizeof(nodes) / sizeof(nodes[0]) && !bad; i++)
		bad |= json_array_append_new(jn, json_pack("{s:s, s:i, s:i, s:s, s:s}", "id",
							   nodes[i].id, "layer", nodes[i].layer,
							   "head", 0, "kind", "head", "role",
							   nodes[i].role));
	for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]) && !bad; i++)
		bad |= json_array_append_new(je, json_pack("{s:s, s:s, s:s, s:s}", "from",
							   edges[i].from, "to", edges[i].to, "via",
							   edges[i].via, "what", edges[i].what));
	if (!bad)
		bad |= json_object_set(doc, "nodes", jn) | json_object_set(doc, "edges", je);
	json_decref(jn);
	json_decref(je);
	if (bad) {
		json_decref(doc);
		return NULL;
	}
	return doc;
}

static const char readme_text[] =
	"# ioi-planted: an IOI model with a circuit known by construction\n"
	"\n"
	"Generated by `mechbench zoo plant ioi-planted --out baselines/models/ioi-planted`\n"
	"(src/tasks/ioi_planted.c; `mechbench zoo verify` rebuilds it and compares every\n"
	"file bit for bit). No training: every weight is set by hand, so which heads and\n"
	"which edges carry the task is known, and circuit discovery (include/mechbench/\n"
	"circuit.h) is scored against `circuit.json` by precision and recall.\n"
	"\n"
	"GPT-2 family: 3 attention-only layers, 4 heads of 64, d_model 256, no LayerNorm,\n"
	"untied unembedding, 32 positions. Tokenizer: WordLevel (WhitespaceSplit) over the\n"
	"IOI generator's vocabulary (mb_ioi_vocab) with `<bos>` (0) and `<unk>` (1), keeping\n"
	"only the first 24 names of the generator's list, so `mb_ioi_generate` draws from\n"
	"those. Prompts work with or without a leading `<bos>`.\n"
	"\n"
	"## Residual stream (one-hot blocks)\n"
	"\n"
	"| dims | block | written by |\n"
	"|---|---|---|\n"
	"| 0-23 | TOK: the token's name identity | embedding |\n"
	"| 24-47 | DUP: identity of a duplicated name | a0.0 |\n"
	"| 48-71 | SINH: the subject's identity at later positions | a1.0 |\n"
	"| 72-95 | OUT: the name copied to the output; logit(name n) = 4 OUT[n] | a2.0 |\n"
	"| 96-127 | POS: one-hot position | position embedding |\n"
	"| 128 / 129 / 130 | NAME flag / CONST (1) / DUP flag | embedding / embedding / a0.0 |\n"
	"| 131-255 | JUNK, read by nothing | the distractor heads |\n"
	"\n"
	"## The circuit (`circuit.json`)\n"
	"\n"
	"Scores after the 1/sqrt(64) scale, A = 32:\n"
	"\n"
	"- **a0.0 duplicate-token head**: score A [same name] - A [self] + A/2 [position 0].\n"
	"  At S2 it attends to S1 and writes S's identity into DUP and 1 into the DUP flag;\n"
	"  elsewhere it rests on position 0 (never a name), whose value is 0.\n"
	"- **a1.0 S-inhibition head**: score A DUPflag + A/2 [position 0]. After S2 it\n"
	"  attends to S2 and moves DUP (S's identity) into SINH.\n"
	"- **a2.0 name mover**: score A NAME - 2A SINH(query).TOK(key). At the end IO\n"
	"  scores A and S1, S2 score -A: it attends to IO and copies it into OUT.\n"
	"\n"
	"Edges: a0.0 -> a1.0 via k (the DUP flag) and via v (S's identity); a1.0 -> a2.0\n"
	"via q (the subject suppressed in the name mover's query).\n"
	"\n"
	"Analytic values: logit(IO) - logit(S) at the end = 4 (to within e^-16 leakage);\n"
	"with a0.0 or a1.0 zero-ablated the name mover splits its attention over IO, S1\n"
	"and S2 and the difference is -4/3; with a2.0 zero-ablated it is exactly 0.\n"
	"\n"
	"## Distractors (write only JUNK; exact zero effect on the logits)\n"
	"\n"
	"a0.1 previous token; a0.2 uniform; a0.3 same name including itself (a\n"
	"duplicate-token head by its pattern); a1.1 names; a1.2 the DUP flag (an\n"
	"S-inhibition head by its pattern, reading a0.0); a1.3 position 0; a2.1 names (a\n"
	"name mover by its pattern); a2.2 names with the subject suppressed (reads a1.0);\n"
	"a2.3 all zero. Attention-pattern heuristics find the decoys; patching does not.\n";

int mb_ioi_planted_build(mb_ioi_planted *out, mb_error *err)
{
	mb_engine_config *c = &out->cfg;
	char **toks = NULL, **words = NULL;
	int32_t names_id[NN];
	int V = 0, error, special[1] = {0};
	size_t n;

	memset(out, 0, sizeof(*out));
	if ((error = vocab(&toks, &words, &V, names_id, err)) < 0)
		return error;
	*c = (mb_engine_config){.n_vocab = V, .n_ctx = P, .d_model = D, .n_layer = L,
				.n_head = H, .d_head = DH, .d_mlp = 0, .act = MB_ACT_GELU_NEW,
				.norm = MB_NORM_NONE, .attn_only = 1, .tied = 0,
				.ln_eps = 1e-5f};
	n = mb_engine_weights_layout(&out->w, c, NULL);
	out->params = calloc(n, sizeof(float));
	out->tokenizer_json = mb_checkpoint_wordlevel_tokenizer((const char *const *)toks, V,
								 special, 1, "<unk>");
	out->circuit = circuit_json();
	out->readme = malloc(sizeof(readme_text));
	free(toks);
	free(words);
	if (!out->params || !out->tokenizer_json || !out->circuit || !out->readme) {
		mb_ioi_planted_dispose(out);
		return mb_error_oom(err, "ioi-planted model", n * sizeof(float));
	}
	memcpy(out->readme, readme_text, sizeof(readme_text));
	mb_engine_weights_layout(&out->w, c, out->params);
	for (int t = 0; t < V; t++)
		out->w.wte[(size_t)t * D + F_CONST] = 1.0f;
	for (int nm = 0; nm < NN; nm++) {
		out->w.wte[(size_t)names_id[nm] * D + TOK + nm] = 1.0f;
		out->w.wte[(size_t)names_id[nm] * D + F_NAME] = 1.0f;
		out->w.unembed[(size_t)names_id[nm] * D + OUT + nm] = LOGIT_SCALE;
	}
	for (int p = 0; p < P; p++)
		out->w.wpe[(size_t)p * D + POS + p] = 1.0f;
	set_heads(&out->w);
	return 0;
}

void mb_ioi_planted_dispose(mb_ioi_planted *m)
{
	if (!m)
		return;
	free(m->params);
	free(m->tokenizer_json);
	json_decref(m->circuit);
	free(m->readme);
	memset(m, 0, sizeof(*m));
}

int mb_ioi_planted_write(const char *dir, const char *command, mb_error *err)
{
	mb_ioi_planted m;
	mb_checkpoint_info info = {.initializer_range = 0.0, .bos_token_id = 0};
	mb_zoo_manifest man;
	char path[4096], *text = NULL;
	int error;

	if ((error = mb_ioi_planted_build(&m, err)) < 0)
		return error;
	if ((error = mb_checkpoint_write(dir, &m.cfg, &m.w, &info, m.tokenizer_json, err)) < 0)
		goto cleanup;
	text = json_dumps(m.circuit, JSON_INDENT(2) | JSON_SORT_KEYS);
	if (!text) {
		error = mb_error_oom(err, "circuit.json", 0);
		goto cleanup;
	}
	snprintf(path, sizeof(path), "%s/circuit.json", dir);
	if ((error = mb_checkpoint_write_text(path, text, err)) < 0)
		goto cleanup;
	snprintf(path, sizeof(path), "%s/README.md", dir);
	if ((error = mb_checkpoint_write_text(path, m.readme, err)) < 0)
		goto cleanup;
	memset(&man, 0, sizeof(man));
	snprintf(man.name, sizeof(man.name), "%s", MB_IOI_PLANTED_NAME);
	snprintf(man.preset, sizeof(man.preset), "planted");
	snprintf(man.command, sizeof(man.command), "%s", command);
	snprintf(man.machine, sizeof(man.machine), "weights set by hand");
	snprintf(man.commit, sizeof(man.commit), "%s", mb_build_commit());
	snprintf(man.gemm, sizeof(man.gemm), "none");
	man.threads = 1;
	man.nfiles = MB_IOI_PLANTED_N_FILES;
	for (size_t i = 0; i < man.nfiles; i++) {
		snprintf(man.files[i], sizeof(man.files[i]), "%s", mb_ioi_planted_files[i]);
		snprintf(path, sizeof(path), "%s/%s", dir, mb_ioi_planted_files[i]);
		if ((error = mb_sha256_hex_file(man.sha256[i], path, err)) < 0)
			goto cleanup;
	}
	snprintf(path, sizeof(path), "%s/MANIFEST", dir);
	error = mb_zoo_manifest_write(&man, path, err);
cleanup:
	free(text);
	mb_ioi_planted_dispose(&m);
	return error;
}
