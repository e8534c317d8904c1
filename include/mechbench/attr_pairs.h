/*
 * attr_pairs.h: task items as clean/corrupted pairs and a metric for
 * attribution patching (attribution.h), shared by `mechbench attribute` and
 * the `attribution` task (src/tasks/attr_pairs.c).
 *
 * Legend: B batch, T positions (the longest pair of the batch).
 *
 * Formats (the items of a mechbench dataset of that task):
 *   induction  clean [bos] R R, corrupted [bos] R C from the item's "bos",
 *              "rep" and "ctl" (the task's control prompt); metric: the mean
 *              cross-entropy over the second repeat's targets r+2..2r
 *              (induction.c's rep2 loss, mb_attr_metric_span_loss)
 *   ioi        clean "tokens", corrupted "abc.tokens" (the ABC prompt, same
 *              length); metric: logit(io_id) - logit(s_id) at the last
 *              position (mb_attr_metric_logit_diff), with bos prepended to
 *              both when bos >= 0
 */
#ifndef MECHBENCH_ATTR_PAIRS_H
#define MECHBENCH_ATTR_PAIRS_H

#include <stdint.h>

#include <mechbench/attribution.h>
#include <mechbench/task.h>

typedef enum mb_attr_format {
	MB_ATTR_FORMAT_INDUCTION = 0,
	MB_ATTR_FORMAT_IOI,
} mb_attr_format;

/* "induction", "ioi". */
const char *mb_attr_format_name(mb_attr_format f);
/* Parses a format name; MB_EINVALID naming it and the choices otherwise. */
int mb_attr_format_parse(mb_attr_format *out, const char *name, mb_error *err);

/* B items as one batch. Arrays are owned; ab points into them. */
typedef struct mb_attr_pairs {
	int B, T;
	int32_t *clean, *corrupt, *len; /* (B, T), (B, T), (B) */
	int32_t *t0, *t1, *good, *bad;  /* (B) */
	mb_attr_span span;
	mb_attr_logit_diff ld;
	mb_attr_batch ab; /* logits MB_LOGITS_ALL; the format's metric */
} mb_attr_pairs;

/*
 * Loads items[0..B) of format f for a model of cfg (token ids checked
 * against its vocabulary, lengths against its n_ctx) into out (zeroed on
 * entry; dispose it on success and on error). bos: the IOI format's prepended
 * token, -1 for none (induction items carry their own). Errors name the item
 * key and the field.
 */
int mb_attr_pairs_load(mb_attr_pairs *out, const mb_item *items, int B, mb_attr_format f,
		       const mb_engine_config *cfg, int bos, mb_error *err);
void mb_attr_pairs_dispose(mb_attr_pairs *p);

#endif
