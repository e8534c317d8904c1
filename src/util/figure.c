/*
 * figure.c: plots as data (figure.h). Legend: R rows, C cols of a figure.
 * A plain data type with its JSON form, in util so that the store and the
 * reports use it without depending on tasks; running a task's figures hook
 * is mb_figure_compute (src/tasks/task_figures.c, declared in task.h).
 */
#include <mechbench/figure.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/str.h>

static const char *const kind_names[] = {"heatmap", "lines", "stem"};

const char *mb_figure_kind_name(mb_figure_kind k)
{
	return (unsigned)k < 3 ? kind_names[k] : "?";
}

int mb_figure_kind_parse(const char *s, mb_figure_kind *out)
{
	for (int k = 0; k < 3; k++)
		if (s && strcmp(s, kind_names[k]) == 0) {
			*out = (mb_figure_kind)k;
			return 0;
		}
	return MB_EINVALID;
}

static void figure_dispose(mb_figure *f)
{
	free(f->name);
	free(f->title);
	free(f->x_label);
	free(f->y_label);
	free(f->value_label);
	free(f->values);
	if (f->row_labels)
		for (size_t i = 0; i < f->rows; i++)
			free(f->row_labels[i]);
	if (f->col_labels)
		for (size_t j = 0; j < f->cols; j++)
			free(f->col_labels[j]);
	free(f->row_labels);
	free(f->col_labels);
	free(f->x);
	memset(f, 0, sizeof(*f));
}

void mb_figure_list_dispose(mb_figure_list *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++)
		figure_dispose(&l->items[i]);
	free(l->items);
	memset(l, 0, sizeof(*l));
}

const mb_figure *mb_figure_list_find(const mb_figure_list *l, const char *name)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->items[i].name, name) == 0)
			return &l->items[i];
	return NULL;
}

int mb_figure_list_add(mb_figure_list *l, mb_figure **out, mb_figure_kind kind, const char *name,
		       size_t rows, size_t cols, mb_error *err)
{
	mb_figure f;

	*out = NULL;
	if (!name || !name[0])
		return mb_error_set(err, MB_EINVALID, "figure: empty name");
	if ((unsigned)kind > MB_FIGURE_STEM)
		return mb_error_set(err, MB_EINVALID, "figure %s: unknown kind %d", name, (int)kind);
	if (mb_figure_list_find(l, name))
		return mb_error_set(err, MB_EINVALID, "figure %s: a figure of that name exists", name);
	if (rows == 0 || cols == 0 || rows > MB_FIGURE_MAX_ROWS || cols > MB_FIGURE_MAX_CELLS ||
	    rows * cols > MB_FIGURE_MAX_CELLS)
		return mb_error_set(err, MB_EINVALID, "figure %s: shape (%zu, %zu) is empty or above "
				    "the limit of %d rows and %d cells", name, rows, cols,
				    MB_FIGURE_MAX_ROWS, MB_FIGURE_MAX_CELLS);
	if (kind == MB_FIGURE_STEM && rows != 1)
		return mb_error_set(err, MB_EINVALID, "figure %s: a stem plot has 1 row, not %zu",
				    name, rows);
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 4;
		mb_figure *ni = realloc(l->items, cap * sizeof(*ni));
		if (!ni)
			return mb_error_oom(err, "figure list", cap * sizeof(*ni));
		l->items = ni;
		l->cap = cap;
	}
	memset(&f, 0, sizeof(f));
	f.kind = kind;
	f.rows = rows;
	f.cols = cols;
	f.name = mb_str_dup(name);
	f.title = mb_str_dup("");
	f.x_label = mb_str_dup("");
	f.y_label = mb_str_dup("");
	f.value_label = mb_str_dup("");
	f.values = malloc(rows * cols * sizeof(double));
	if (!f.name || !f.title || !f.x_label || !f.y_label || !f.value_label || !f.values) {
		figure_dispose(&f);
		return mb_error_oom(err, "figure", rows * cols * sizeof(double));
	}
	for (size_t i = 0; i < rows * cols; i++)
		f.values[i] = NAN;
	l->items[l->n] = f;
	*out = &l->items[l->n++];
	return 0;
}

static int replace(char **slot, const char *v, mb_error *err)
{
	char *p;
	if (!v)
		return 0;
	if (!(p = mb_str_dup(v)))
		return mb_error_oom(err, "figure label", strlen(v) + 1);
	free(*slot);
	*slot = p;
	return 0;
}

int mb_figure_set_text(mb_figure *f, const char *title, const char *x_label, const char *y_label,
		       const char *value_label, mb_error *err)
{
	int error;
	if ((error = replace(&f->title, title, err)) < 0 ||
	    (error = replace(&f->x_label, x_label, err)) < 0 ||
	    (error = replace(&f->y_label, y_label, err)) < 0 ||
	    (error = replace(&f->value_label, value_label, err)) < 0)
		return error;
	return 0;
}

/* Fills a label array of n entries with their indices. */
static int index_labels(char ***out, size_t n, mb_error *err)
{
	char **l = calloc(n, sizeof(*l));
	if (!l)
		return mb_error_oom(err, "figure labels", n * sizeof(*l));
	for (size_t i = 0; i < n; i++) {
		char num[32];
		snprintf(num, sizeof(num), "%zu", i);
		if (!(l[i] = mb_str_dup(num))) {
			for (size_t k = 0; k < i; k++)
				free(l[k]);
			free(l);
			return mb_error_oom(err, "figure labels", n * sizeof(*l));
		}
	}
	*out = l;
	return 0;
}

int mb_figure_set_row_label(mb_figure *f, size_t i, const char *label, mb_error *err)
{
	int error;
	if (i >= f->rows)
		return mb_error_set(err, MB_EINVALID, "figure %s: row label %zu of %zu rows", f->name,
				    i, f->rows);
	if (!f->row_labels && (error = index_labels(&f->row_labels, f->rows, err)) < 0)
		return error;
	return replace(&f->row_labels[i], label, err);
}

int mb_figure_set_col_label(mb_figure *f, size_t j, const char *label, mb_error *err)
{
	int error;
	if (j >= f->cols)
		return mb_error_set(err, MB_EINVALID, "figure %s: column label %zu of %zu columns",
				    f->name, j, f->cols);
	if (!f->col_labels && (error = index_labels(&f->col_labels, f->cols, err)) < 0)
		return error;
	return replace(&f->col_labels[j], label, err);
}

int mb_figure_set_x(mb_figure *f, const double *x, mb_error *err)
{
	double *c;
	for (size_t j = 0; j < f->cols; j++)
		if (!isfinite(x[j]) || (j > 0 && !(x[j] > x[j - 1])))
			return mb_error_set(err, MB_EINVALID, "figure %s: x[%zu] = %g is not finite "
					    "and increasing", f->name, j, x[j]);
	if (!(c = malloc(f->cols * sizeof(double))))
		return mb_error_oom(err, "figure x", f->cols * sizeof(double));
	memcpy(c, x, f->cols * sizeof(double));
	free(f->x);
	f->x = c;
	return 0;
}

/* --- JSON ------------------------------------------------------------------------------ */

static json_t *real17(double v)
{
	/* jansson prints reals with 17 significant digits, enough to read back
	 * the same double; non-finite values have no JSON form: null. */
	return isfinite(v) ? json_real(v) : json_null();
}

static json_t *labels_json(char **l, size_t n)
{
	json_t *a;
	if (!l)
		return json_null();
	if (!(a = json_array()))
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (json_array_append_new(a, json_string(l[i])) < 0) {
			json_decref(a);
			return NULL;
		}
	return a;
}

json_t *mb_figure_to_json(const mb_figure *f)
{
	json_t *o = json_object(), *v = json_array(), *x = NULL;
	int bad = !o || !v;

	for (size_t i = 0; !bad && i < f->rows * f->cols; i++)
		bad |= json_array_append_new(v, real17(f->values[i])) < 0;
	if (f->x) {
		x = json_array();
		bad |= !x;
		for (size_t j = 0; !bad && j < f->cols; j++)
			bad |= json_array_append_new(x, json_real(f->x[j])) < 0;
	} else {
		x = json_null();
	}
	if (!bad) {
		bad |= json_object_set_new(o, "mechbench_figure", json_integer(MB_FIGURE_FORMAT));
		bad |= json_object_set_new(o, "name", json_string(f->name));
		bad |= json_object_set_new(o, "kind", json_string(mb_figure_kind_name(f->kind)));
		bad |= json_object_set_new(o, "title", json_string(f->title));
		bad |= json_object_set_new(o, "x_label", json_string(f->x_label));
		bad |= json_object_set_new(o, "y_label", json_string(f->y_label));
		bad |= json_object_set_new(o, "value_label", json_string(f->value_label));
		bad |= json_object_set_new(o, "diverging", json_boolean(f->diverging));
		bad |= json_object_set_new(o, "rows", json_integer((json_int_t)f->rows));
		bad |= json_object_set_new(o, "cols", json_integer((json_int_t)f->cols));
		bad |= json_object_set_new(o, "row_labels", labels_json(f->row_labels, f->rows));
		bad |= json_object_set_new(o, "col_labels", labels_json(f->col_labels, f->cols));
		bad |= json_object_set_new(o, "x", x);
		x = NULL;
		bad |= json_object_set_new(o, "values", v);
		v = NULL;
	}
	json_decref(x);
	json_decref(v);
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static int field_string(const json_t *doc, const char *key, const char **out, const char *name,
			mb_error *err)
{
	json_t *v = json_object_get(doc, key);
	if (!json_is_string(v))
		return mb_error_set(err, MB_EINVALID, "%s: %s: expected a string", name, key);
	*out = json_string_value(v);
	return 0;
}

static int field_size(const json_t *doc, const char *key, size_t *out, const char *name,
		      mb_error *err)
{
	json_t *v = json_object_get(doc, key);
	if (!json_is_integer(v) || json_integer_value(v) < 1 ||
	    json_integer_value(v) > MB_FIGURE_MAX_CELLS)
		return mb_error_set(err, MB_EINVALID, "%s: %s: expected an integer in [1, %d]", name,
				    key, MB_FIGURE_MAX_CELLS);
	*out = (size_t)json_integer_value(v);
	return 0;
}

static int read_labels(mb_figure *f, const json_t *a, size_t n, int rows, const char *name,
		       mb_error *err)
{
	const char *what = rows ? "row_labels" : "col_labels";
	int error;

	if (json_is_null(a) || !a)
		return 0;
	if (!json_is_array(a) || json_array_size(a) != n)
		return mb_error_set(err, MB_EINVALID, "%s: %s: expected null or %zu strings", name,
				    what, n);
	for (size_t i = 0; i < n; i++) {
		json_t *s = json_array_get(a, i);
		if (!json_is_string(s))
			return mb_error_set(err, MB_EINVALID, "%s: %s[%zu]: expected a string", name,
					    what, i);
		error = rows ? mb_figure_set_row_label(f, i, json_string_value(s), err)
			     : mb_figure_set_col_label(f, i, json_string_value(s), err);
		if (error < 0)
			return error;
	}
	return 0;
}

int mb_figure_list_add_json(mb_figure_list *l, const json_t *doc, const char *name,
			    mb_error *err)
{
	static const char *const keys[] = {"mechbench_figure", "name", "kind", "title", "x_label",
					   "y_label", "value_label", "diverging", "rows", "cols",
					   "row_labels", "col_labels", "x", "values", NULL};
	const char *fname = NULL, *kind_s = NULL, *title = NULL, *xl = NULL, *yl = NULL, *vl = NULL;
	const char *key;
	mb_figure_kind kind;
	size_t rows = 0, cols = 0, before = l->n;
	json_t *v, *values, *x;
	mb_figure *f;
	int error;

	if (!json_is_object(doc))
		return mb_error_set(err, MB_EINVALID, "%s: expected a JSON object", name);
	json_object_foreach((json_t *)doc, key, v) {
		size_t k = 0;
		while (keys[k] && strcmp(keys[k], key) != 0)
			k++;
		if (!keys[k])
			return mb_error_set(err, MB_EINVALID, "%s: %s: unknown field", name, key);
	}
	v = json_object_get(doc, "mechbench_figure");
	if (!json_is_integer(v) || json_integer_value(v) != MB_FIGURE_FORMAT)
		return mb_error_set(err, MB_EINVALID, "%s: mechbench_figure: expected %d", name,
				    MB_FIGURE_FORMAT);
	if ((error = field_string(doc, "name", &fname, name, err)) < 0 ||
	    (error = field_string(doc, "kind", &kind_s, name, err)) < 0 ||
	    (error = field_string(doc, "title", &title, name, err)) < 0 ||
	    (error = field_string(doc, "x_label", &xl, name, err)) < 0 ||
	    (error = field_string(doc, "y_label", &yl, name, err)) < 0 ||
	    (error = field_string(doc, "value_label", &vl, name, err)) < 0 ||
	    (error = field_size(doc, "rows", &rows, name, err)) < 0 ||
	    (error = field_size(doc, "cols", &cols, name, err)) < 0)
		return error;
	if (mb_figure_kind_parse(kind_s, &kind) < 0)
		return mb_error_set(err, MB_EINVALID, "%s: kind: expected heatmap, lines or stem, "
				    "not '%s'", name, kind_s);
	v = json_object_get(doc, "diverging");
	if (!json_is_boolean(v))
		return mb_error_set(err, MB_EINVALID, "%s: diverging: expected true or false", name);
	values = json_object_get(doc, "values");
	if (!json_is_array(values) || json_array_size(values) != rows * cols)
		return mb_error_set(err, MB_EINVALID, "%s: values: expected %zu numbers (rows x cols)",
				    name, rows * cols);
	if ((error = mb_figure_list_add(l, &f, kind, fname, rows, cols, err)) < 0) {
		mb_error_prefix(err, "%s", name);
		return error;
	}
	f->diverging = json_is_true(v);
	if ((error = mb_figure_set_text(f, title, xl, yl, vl, err)) < 0)
		goto fail;
	for (size_t i = 0; i < rows * cols; i++) {
		json_t *e = json_array_get(values, i);
		if (json_is_null(e)) {
			f->values[i] = NAN;
		} else if (json_is_number(e) && isfinite(json_number_value(e))) {
			f->values[i] = json_number_value(e);
		} else {
			error = mb_error_set(err, MB_EINVALID, "%s: values[%zu]: expected a number "
					     "or null", name, i);
			goto fail;
		}
	}
	if ((error = read_labels(f, json_object_get(doc, "row_labels"), rows, 1, name, err)) < 0 ||
	    (error = read_labels(f, json_object_get(doc, "col_labels"), cols, 0, name, err)) < 0)
		goto fail;
	x = json_object_get(doc, "x");
	if (x && !json_is_null(x)) {
		double *xs;
		if (!json_is_array(x) || json_array_size(x) != cols) {
			error = mb_error_set(err, MB_EINVALID, "%s: x: expected null or %zu numbers",
					     name, cols);
			goto fail;
		}
		if (!(xs = malloc(cols * sizeof(double)))) {
			error = mb_error_oom(err, "figure x", cols * sizeof(double));
			goto fail;
		}
		for (size_t j = 0; j < cols; j++) {
			json_t *e = json_array_get(x, j);
			xs[j] = json_is_number(e) ? json_number_value(e) : NAN;
		}
		error = mb_figure_set_x(f, xs, err);
		free(xs);
		if (error < 0) {
			mb_error_prefix(err, "%s", name);
			goto fail;
		}
	}
	return 0;
fail:
	/* Drop the half-read figure: the list is as it was before the call. */
	while (l->n > before)
		figure_dispose(&l->items[--l->n]);
	return error;
}
