/*
 * harness_support.h: helpers for the harness, store and CLI tests: temporary
 * folders, files, a synthetic model and dataset, and running the mechbench
 * binary (MB_CLI_PATH) with its output captured.
 */
#ifndef MB_TEST_HARNESS_SUPPORT_H
#define MB_TEST_HARNESS_SUPPORT_H

#include <stddef.h>

/* Makes a fresh folder under /tmp into buf (cap bytes); aborts the test
 * process on failure. */
void mbt_tmpdir(char *buf, size_t cap);
/* Removes a folder tree (rm -rf); used to clean up after a test. */
void mbt_rmtree(const char *dir);
/* Writes text to dir/rel, creating one level of parent folder. */
void mbt_write(const char *dir, const char *rel, const char *text);
/* Reads dir/rel into a malloc'd NUL-terminated string (NULL if absent). */
char *mbt_read(const char *dir, const char *rel);

/* Writes a synthetic model folder dir/rel holding synthetic.json with
 * weights w[0..dim) and bias b. */
void mbt_synthetic_model(const char *dir, const char *rel, const double *w, int dim, double b);
/* The "true" synthetic model: w_j = (-1)^j, b = 0, dim 8. */
void mbt_true_model(const char *dir, const char *rel);

/* Runs `cd dir && <cmd>` through /bin/sh with stdout and stderr captured
 * into *out (malloc'd; may be NULL). Returns the exit status (or -1). */
int mbt_sh(const char *dir, const char *cmd, char **out);

#endif
