/* figures_cli.c: see figures_cli.h. */
#include "figures_cli.h"

#include <stdio.h>
#include <string.h>

#include <mechbench/dataset.h>
#include <mechbench/figure.h>
#include <mechbench/file.h>
#include <mechbench/results.h>

int mb_cli_figures_compute(mb_figure_list *out, const mb_spec *spec, const char *root,
			   const char *model_override, const mb_entry_result *e, mb_error *err)
{
	const mb_spec_entry *se = mb_spec_find_entry(spec, e->name);
	char model[4096];
	mb_dataset d;
	int error;

	if (!se || !se->task->figures)
		return 0;
	if (model_override)
		snprintf(model, sizeof(model), "%s", model_override);
	else if ((error = mb_file_path_join(model, sizeof(model), root, se->model ? se->model : "",
					    err)) < 0)
		return error;
	if ((error = mb_runner_load_dataset(&d, se, root, err)) < 0)
		return error;
	if (d.items.n != e->n_items)
		error = mb_error_set(err, MB_EMISMATCH, "%s: %zu items, but the run of entry %s has "
				     "%zu", d.name, d.items.n, e->name, e->n_items);
	else
		error = mb_figure_compute(out, se->task, root, model, se->params, d.items.items,
					  d.items.n, e->values, err);
	mb_dataset_dispose(&d);
	return error;
}

int mb_cli_store_run(mb_store *store, mb_run_result *run, const mb_figure_list *figs,
		     size_t n_figs, mb_error *err)
{
	int64_t id = 0;
	int error = mb_store_run_begin(store, &id, &run->prov, err);

	for (size_t i = 0; i < run->n_entries && error == 0; i++) {
		error = mb_store_run_put_entry(store, id, &run->entries[i], err);
		if (error == 0 && i < n_figs)
			error = mb_results_put_figures(store, id, run->entries[i].name, &figs[i], err);
	}
	if (error == 0)
		error = mb_store_run_commit(store, id, &run->prov, err);
	if (error < 0)
		mb_store_run_abort(store);
	else
		run->id = id;
	return error;
}
