/*
 * engine_fx.h: helpers for tests that read the engine's golden fixtures
 * (tests/fixtures/engine/, made by gen_fixtures.py with PyTorch).
 *
 * Shape letters: B batch, T positions, H heads.
 */
#ifndef MB_TESTS_ENGINE_FX_H
#define MB_TESTS_ENGINE_FX_H

#include <stddef.h>
#include <stdint.h>

#include <mechbench/engine.h>
#include <mechbench/model.h>
#include <mechbench/npy.h>

#define FX_ENGINE_DIR MB_SOURCE_DIR "/tests/fixtures/engine"
/* GPT-NeoX fixtures (gen_neox_fixtures.py): models whose names start "neox". */
#define FX_NEOX_DIR MB_SOURCE_DIR "/tests/fixtures/neox"

/* The fixture models: the three GPT-2 ones (FX_N_GPT2 first), then two
 * GPT-NeoX ones (parallel residual, rotary_pct 0.5, untied; sequential
 * residual, rotary_pct 1, tied). Paths of every helper below resolve to
 * FX_NEOX_DIR for the NeoX ones. */
#define FX_N_GPT2 3
#define FX_N_MODELS 5
extern const char *const fx_models[FX_N_MODELS];

/* Loads models/<name> (asserts on failure). */
mb_model *fx_model(const char *name);
/* Reads <model>/<batch>/tokens.npy and lengths.npy as int32: tokens (B, T),
 * lengths (B); malloc'd. */
void fx_batch(const char *model, const char *batch, int32_t **tokens, int32_t **lengths, int *B,
	      int *T);
/* Reads a fixture file relative to FX_ENGINE_DIR as float32 (asserts). */
void fx_npy(mb_npy *out, const char *rel);
/* <model>/batch0/interventions/source_tokens.npy as int32 (B, T): the
 * corrupted batch of the intervention fixtures; malloc'd. */
int32_t *fx_source_tokens(const char *model);
/* An engine over model m for runs up to (max_batch, max_seq). */
mb_engine *fx_engine(const mb_model *m, int max_batch, int max_seq, int keep);

/*
 * Compares got with want at valid positions: for a (B, T, ...) layout
 * (attn_layout 0) every t < len[b]; for (B, H, T, T) (attn_layout 1) every
 * query row q < len[b] of every head. Equal infinities compare equal. Prints
 * "label: max |diff| = ..., worst at flat index ..." and returns the number of
 * entries outside atol + rtol * |want|; *max_diff gets the max difference.
 */
long fx_compare(const char *label, const float *got, const mb_npy *want, const int32_t *lengths,
		int attn_layout, double atol, double rtol, double *max_diff);

/* The run over a whole batch with every logit. */
mb_run fx_run(const int32_t *tokens, const int32_t *lengths, int B, int T);

#endif
