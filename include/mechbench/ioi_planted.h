/*
 * ioi_planted.h: the `ioi-planted` model, a GPT-2-family checkpoint whose
 * weights are set by hand so that its IOI circuit is known by construction
 * (issue 17, item 3): what circuit discovery is scored against
 * (circuit.h, mb_circuit_compare). Committed under
 * baselines/models/ioi-planted/ (`mechbench zoo plant ioi-planted`); `zoo
 * verify` rebuilds it and compares the files bit for bit.
 *
 * Architecture: 3 attention-only layers, 4 heads of 64, d_model 256, no
 * LayerNorm, untied unembedding, 32 positions. Tokenizer: WordLevel,
 * WhitespaceSplit, "<bos>" (0, special), "<unk>" (1), then mb_ioi_vocab's
 * words without the names after the first MB_IOI_PLANTED_NAMES of the list
 * (so the IOI generator keeps exactly those names; mb_ioi_lexicon_init).
 *
 * Residual stream (one-hot blocks, 24 = MB_IOI_PLANTED_NAMES):
 *   TOK  [0, 24)    the token's name identity (embedding)
 *   DUP  [24, 48)   the identity of a duplicated name (written by a0.0)
 *   SINH [48, 72)   the subject's identity moved to later positions (a1.0)
 *   OUT  [72, 96)   the name the name mover copies (a2.0); the unembedding
 *                   reads only this block: logit(name n) = 4 OUT[n]
 *   POS  [96, 128)  one-hot position (wpe)
 *   128 NAME flag, 129 CONST (1 everywhere), 130 DUP flag
 *   JUNK [131, 256) written by the distractor heads, read by nothing.
 * Attention scores (after the 1/sqrt(64) scale), A = 32:
 *   a0.0 duplicate token: A [same name] - A [j = i] + A/2 [j = 0]: at S2 it
 *        attends to S1 and writes S's identity to DUP and 1 to the DUP flag;
 *        elsewhere it rests on position 0 (never a name: no template starts
 *        with one, and a BOS there is not a name either), whose value is 0.
 *   a1.0 S-inhibition: A DUPflag(j) + A/2 [j = 0]: after S2 it attends to S2
 *        and moves DUP (S's identity) into SINH.
 *   a2.0 name mover: A NAME(j) - 2A SINH(i).TOK(j): at the end IO scores A,
 *        S1 and S2 -A: it attends to IO and copies its identity into OUT.
 * So the logit difference logit(IO) - logit(S) at the end is 4 (to within
 * e^-16 leakage); without a0.0 or a1.0 the name mover splits its attention
 * over IO, S1, S2 and it is -4/3; without a2.0 it is 0 (zero ablation).
 * Distractors (write only JUNK): a0.1 previous token, a0.2 uniform, a0.3
 * duplicate token including itself (a decoy by pattern), a1.1 names, a1.2
 * the DUP flag (a decoy S-inhibition head by pattern, reads a0.0), a1.3
 * position 0, a2.1 names (a decoy name mover), a2.2 names with the subject
 * suppressed (reads a1.0), a2.3 all weights zero.
 * The true circuit (circuit.json): nodes a0.0, a1.0, a2.0; edges a0.0 -> a1.0
 * via k (the DUP flag) and via v (S's identity), a1.0 -> a2.0 via q.
 */
#ifndef MECHBENCH_IOI_PLANTED_H
#define MECHBENCH_IOI_PLANTED_H

#include <jansson.h>

#include <mechbench/engine.h>
#include <mechbench/error.h>

#define MB_IOI_PLANTED_NAME "ioi-planted"
/* Names the model knows: the first this many of mb_ioi_words(MB_IOI_NAMES). */
#define MB_IOI_PLANTED_NAMES 24
/* logit(IO) - logit(S) of a clean prompt, by construction (to within 1e-5). */
#define MB_IOI_PLANTED_LOGIT_DIFF 4.0

/* The model in memory. */
typedef struct mb_ioi_planted {
	mb_engine_config cfg;
	mb_engine_weights w;  /* pointers into params */
	float *params;        /* owned */
	char *tokenizer_json; /* owned: tokenizer.json text */
	json_t *circuit;      /* owned reference: circuit.json (the true circuit) */
	char *readme;         /* owned: README.md text */
} mb_ioi_planted;

/* Builds the model. A pure function of the IOI generator's word lists and
 * templates (ioi_prompts.h). Errors: MB_ENOMEM, mb_ioi_vocab's. */
int mb_ioi_planted_build(mb_ioi_planted *out, mb_error *err);
void mb_ioi_planted_dispose(mb_ioi_planted *m);

/* The files mb_ioi_planted_write writes besides MANIFEST (sorted), and
 * their count. */
extern const char *const mb_ioi_planted_files[];
#define MB_IOI_PLANTED_N_FILES 5

/* Builds the model and writes dir (created when missing): config.json,
 * model.safetensors, tokenizer.json, circuit.json, README.md, then MANIFEST
 * (zoo.h: name "ioi-planted", preset "planted", seed 0, training_seconds 0,
 * machine "weights set by hand", threads 1, command, this build's commit,
 * gemm "none", the sha256 of each file). Errors name the file. */
int mb_ioi_planted_write(const char *dir, const char *command, mb_error *err);

#endif
