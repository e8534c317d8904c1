/* task_figures.c: running a task's optional figures hook (task.h). The
 * figure type it fills is util's (figure.h). */
#include <mechbench/task.h>

int mb_figure_compute(mb_figure_list *out, const mb_task *t, const char *root,
		      const char *model_dir, const json_t *params, const mb_item *items, size_t n,
		      const double *values, mb_error *err)
{
	void *state = NULL;
	int error;

	if (!t->figures)
		return 0;
	if ((error = mb_task_open(&state, t, root, model_dir, params, err)) < 0)
		return error;
	error = t->figures(state, items, n, values, out, err);
	t->close(state);
	if (error < 0)
		mb_error_prefix(err, "%s: figures of task %s", model_dir, t->name);
	return error;
}
