/*
 * figures_cli.h: the figures a task attaches to an entry of a run (figure.h),
 * computed and stored by the commands that store runs.
 */
#ifndef MB_FIGURES_CLI_H
#define MB_FIGURES_CLI_H

#include <stdint.h>

#include <mechbench/error.h>
#include <mechbench/figure.h>
#include <mechbench/runner.h>
#include <mechbench/spec.h>
#include <mechbench/store.h>

/* Runs the figures hook of entry e's task on the model the entry ran
 * (model_override, else root/<the spec entry's model>) over its dataset
 * (root/<dataset>; its path params under root too, mb_task_open) and e's
 * values, appending the figures to *out (disposed
 * with mb_figure_list_dispose). A task without the hook adds nothing.
 * Computed before the run's short write transaction (store.h). */
int mb_cli_figures_compute(mb_figure_list *out, const mb_spec *spec, const char *root,
			   const char *model_override, const mb_entry_result *e, mb_error *err);

/* Stores run with figs[i] (i < n_figs) attached to its entry i, in one short
 * transaction after all the work; sets run->id. Nothing is stored on error. */
int mb_cli_store_run(mb_store *store, mb_run_result *run, const mb_figure_list *figs,
		     size_t n_figs, mb_error *err);

#endif
