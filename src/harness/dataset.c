/* dataset.c: frozen JSONL item lists and datasets/MANIFEST (see dataset.h). */
#include <mechbench/dataset.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/file.h>
#include <mechbench/parse.h>

#define DUMP_FLAGS (JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17))

/* --- a growable byte buffer ----------------------------------------------- */

typedef struct buf {
	char *p;
	size_t n, cap;
} buf;

static int buf_put(buf *b, const char *s, size_t n, mb_error *err)
{
	if (b->n + n + 1 > b->cap) {
		size_t ncap = b->cap ? b->cap : 1 << 16;
		while (ncap < b->n + n + 1)
			ncap *= 2;
		char *np = realloc(b->p, ncap);
		if (!np)
			return mb_error_oom(err, "dataset text", ncap);
		b->p = np;
		b->cap = ncap;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = '\0';
	return 0;
}

static int buf_put_json_line(buf *b, const json_t *v, mb_error *err)
{
	char *s = json_dumps(v, DUMP_FLAGS);
	int error;

	if (!s)
		return mb_error_oom(err, "dataset line", 0);
	error = buf_put(b, s, strlen(s), err);
	free(s);
	if (!error)
		error = buf_put(b, "\n", 1, err);
	return error;
}

/* --- parsing ---------------------------------------------------------------- */

typedef struct keyed {
	const char *key;
	size_t idx;
} keyed;

static int cmp_keyed(const void *a, const void *b)
{
	return strcmp(((const keyed *)a)->key, ((const keyed *)b)->key);
}

static int parse_header(mb_dataset *d, json_t *h, int64_t *n_items, mb_error *err)
{
	json_t *fmt = json_object_get(h, "mechbench_dataset");
	json_t *n = json_object_get(h, "n_items");
	json_t *params = json_object_get(h, "params");
	json_t *seed = json_object_get(h, "seed");
	json_t *task = json_object_get(h, "task");
	json_t *tv = json_object_get(h, "task_version");

	if (!json_is_object(h) || json_object_size(h) != 6 || !json_is_integer(fmt) ||
	    !json_is_integer(n) || !json_is_object(params) || !json_is_integer(seed) ||
	    !json_is_string(task) || !json_is_integer(tv))
		return mb_error_set(err, MB_EINVALID,
				    "%s:1: not a mechbench dataset header (expected exactly "
				    "mechbench_dataset, n_items, params, seed, task, task_version)",
				    d->name);
	if (json_integer_value(fmt) != MB_DATASET_FORMAT)
		return mb_error_set(err, MB_EINVALID, "%s:1: dataset format %lld, this build reads %d",
				    d->name, (long long)json_integer_value(fmt), MB_DATASET_FORMAT);
	if (json_integer_value(n) < 0 || json_integer_value(seed) < 0 ||
	    json_integer_value(tv) < 1)
		return mb_error_set(err, MB_EINVALID, "%s:1: negative n_items or seed, or "
				    "task_version < 1", d->name);
	d->task = strdup(json_string_value(task));
	if (!d->task)
		return mb_error_oom(err, "dataset header", 0);
	d->task_version = (int)json_integer_value(tv);
	d->seed = (uint64_t)json_integer_value(seed);
	d->params = json_incref(params);
	*n_items = json_integer_value(n);
	return 0;
}

/* The recipe's "ood" field: a list of unique stratum names, each with items.
 * where labels the message ("datasets/x.jsonl:1", "MANIFEST:7"). */
static int check_ood(const json_t *params, const mb_item_list *items, const char *where,
		     mb_error *err)
{
	const json_t *ood = json_object_get(params, "ood");

	if (!ood)
		return 0;
	if (!json_is_array(ood) || json_array_size(ood) == 0)
		return mb_error_set(err, MB_EINVALID, "%s: params.ood: expected a non-empty list of "
				    "stratum names (the strata outside the model's training "
				    "distribution)", where);
	for (size_t i = 0; i < json_array_size(ood); i++) {
		const char *s = json_string_value(json_array_get(ood, i));
		size_t k = 0;
		if (!s || !s[0])
			return mb_error_set(err, MB_EINVALID, "%s: params.ood[%zu]: expected a "
					    "stratum name", where, i);
		for (size_t j = 0; j < i; j++)
			if (strcmp(s, json_string_value(json_array_get(ood, j))) == 0)
				return mb_error_set(err, MB_EINVALID, "%s: params.ood[%zu]: '%s' "
						    "is listed twice", where, i, s);
		while (k < items->n && strcmp(items->items[k].stratum, s) != 0)
			k++;
		if (k == items->n)
			return mb_error_set(err, MB_EINVALID, "%s: params.ood[%zu]: no item is in "
					    "stratum '%s'", where, i, s);
	}
	return 0;
}

int mb_dataset_is_ood(const mb_dataset *d, const char *stratum)
{
	const json_t *ood = d->params ? json_object_get(d->params, "ood") : NULL;

	for (size_t i = 0; i < json_array_size(ood); i++)
		if (strcmp(json_string_value(json_array_get(ood, i)), stratum) == 0)
			return 1;
	return 0;
}

static int parse_item(mb_dataset *d, json_t *o, int line, mb_error *err)
{
	json_t *key = json_object_get(o, "key");
	json_t *stratum = json_object_get(o, "stratum");
	json_t *cluster = json_object_get(o, "cluster");
	json_t *input = json_object_get(o, "input");
	int error;

	if (!json_is_object(o) || json_object_size(o) != 4 || !json_is_string(key) ||
	    !json_is_string(stratum) || !json_is_string(cluster) || !input)
		return mb_error_set(err, MB_EINVALID,
				    "%s:%d: an item must be exactly {\"cluster\": string, "
				    "\"input\": ..., \"key\": string, \"stratum\": string}",
				    d->name, line);
	error = mb_item_list_add(&d->items, json_string_value(stratum),
				 json_string_value(cluster), json_incref(input), err);
	if (error < 0)
		return mb_error_prefix(err, "%s:%d", d->name, line);
	if (strcmp(d->items.items[d->items.n - 1].key, json_string_value(key)) != 0)
		return mb_error_set(err, MB_EMISMATCH,
				    "%s:%d: item key %s is not the item's content hash (%s)",
				    d->name, line, json_string_value(key),
				    d->items.items[d->items.n - 1].key);
	return 0;
}

int mb_dataset_parse(mb_dataset *out, const char *text, size_t len, const char *name,
		     mb_error *err)
{
	size_t pos = 0;
	int line = 0, error = 0;
	int64_t n_items = -1;
	keyed *order = NULL;

	memset(out, 0, sizeof(*out));
	out->name = strdup(name ? name : "<dataset>");
	if (!out->name)
		return mb_error_oom(err, "dataset name", 0);
	mb_sha256_hex_buf(out->sha256, text, len);
	while (pos < len) {
		const char *s = text + pos;
		const char *nl = memchr(s, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - s) : len - pos;
		json_error_t jerr;
		json_t *v;

		line++;
		pos += n + (nl ? 1 : 0);
		if (n == 0) {
			error = mb_error_set(err, MB_EINVALID, "%s:%d: empty line", out->name, line);
			goto cleanup;
		}
		v = json_loadb(s, n, JSON_REJECT_DUPLICATES, &jerr);
		if (!v) {
			error = mb_error_set(err, MB_EINVALID, "%s:%d:%d: invalid JSON: %s",
					     out->name, line, jerr.column > 0 ? jerr.column : 1,
					     jerr.text);
			goto cleanup;
		}
		error = line == 1 ? parse_header(out, v, &n_items, err)
				  : parse_item(out, v, line, err);
		json_decref(v);
		if (error < 0)
			goto cleanup;
	}
	if (line == 0) {
		error = mb_error_set(err, MB_EINVALID, "%s: empty file, not a dataset", out->name);
		goto cleanup;
	}
	if ((int64_t)out->items.n != n_items) {
		error = mb_error_set(err, MB_EINVALID, "%s: header says %lld items, file has %zu",
				     out->name, (long long)n_items, out->items.n);
		goto cleanup;
	}
	order = malloc((out->items.n + 1) * sizeof(*order));
	out->by_key = malloc((out->items.n + 1) * sizeof(*out->by_key));
	if (!order || !out->by_key) {
		error = mb_error_oom(err, "dataset index", out->items.n * sizeof(*order));
		goto cleanup;
	}
	for (size_t i = 0; i < out->items.n; i++) {
		order[i].key = out->items.items[i].key;
		order[i].idx = i;
	}
	if ((error = check_ood(out->params, &out->items, out->name, err)) < 0)
		goto cleanup;
	qsort(order, out->items.n, sizeof(*order), cmp_keyed);
	for (size_t i = 0; i < out->items.n; i++) {
		if (i > 0 && strcmp(order[i].key, order[i - 1].key) == 0) {
			size_t a = order[i - 1].idx, b = order[i].idx;
			error = mb_error_set(err, MB_EINVALID, "%s:%zu: duplicate item key %s (also "
					     "line %zu)", out->name, (a > b ? a : b) + 2,
					     order[i].key, (a < b ? a : b) + 2);
			goto cleanup;
		}
		out->by_key[i] = order[i].idx;
	}
cleanup:
	free(order);
	if (error < 0)
		mb_dataset_dispose(out);
	return error;
}

int mb_dataset_load(mb_dataset *out, const char *path, mb_error *err)
{
	char *text = NULL;
	size_t len;
	int error;

	memset(out, 0, sizeof(*out));
	error = mb_file_read_text(&text, &len, path, err);
	if (error < 0)
		return error;
	error = mb_dataset_parse(out, text, len, path, err);
	free(text);
	return error;
}

void mb_dataset_dispose(mb_dataset *d)
{
	if (!d)
		return;
	mb_item_list_dispose(&d->items);
	json_decref(d->params);
	free(d->task);
	free(d->name);
	free(d->by_key);
	memset(d, 0, sizeof(*d));
}

long mb_dataset_find(const mb_dataset *d, const char *key)
{
	size_t lo = 0, hi = d->items.n;

	if (!d->by_key)
		return -1;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(d->items.items[d->by_key[mid]].key, key);
		if (c == 0)
			return (long)d->by_key[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/* --- rendering -------------------------------------------------------------- */

int mb_dataset_render(char **out, size_t *len, const char *task, int task_version,
		      uint64_t seed, const json_t *params, const mb_item_list *items,
		      mb_error *err)
{
	buf b = {0};
	json_t *h = NULL;
	int error = 0;

	*out = NULL;
	*len = 0;
	if (seed > (uint64_t)INT64_MAX)
		return mb_error_set(err, MB_EINVALID, "dataset seed %llu is above 2^63-1",
				    (unsigned long long)seed);
	h = json_pack("{s:i, s:I, s:o, s:I, s:s, s:i}", "mechbench_dataset", MB_DATASET_FORMAT,
		      "n_items", (json_int_t)items->n, "params",
		      params ? json_incref((json_t *)params) : json_object(), "seed",
		      (json_int_t)seed,
		      "task", task, "task_version", task_version);
	if (!h) {
		error = mb_error_oom(err, "dataset header", 0);
		goto cleanup;
	}
	if ((error = buf_put_json_line(&b, h, err)) < 0)
		goto cleanup;
	for (size_t i = 0; i < items->n; i++) {
		const mb_item *it = &items->items[i];
		json_t *o = json_pack("{s:s, s:O, s:s, s:s}", "cluster", it->cluster, "input",
				      it->input, "key", it->key, "stratum", it->stratum);
		if (!o) {
			error = mb_error_oom(err, "dataset item", 0);
			goto cleanup;
		}
		error = buf_put_json_line(&b, o, err);
		json_decref(o);
		if (error < 0)
			goto cleanup;
	}
	*out = b.p;
	*len = b.n;
	b.p = NULL;
cleanup:
	free(b.p);
	json_decref(h);
	return error;
}

int mb_dataset_generate(char **out, size_t *len, const mb_task *t, uint64_t seed,
			const json_t *params, mb_error *err)
{
	mb_item_list items = {0};
	int error;

	json_t *gen = NULL;

	*out = NULL;
	*len = 0;
	/* "ood" belongs to the harness (which strata the claim leaves out), not to
	 * the generator: the generator sees the recipe without it, the header
	 * records the whole recipe. */
	if (params && json_object_get(params, "ood")) {
		if (!(gen = json_deep_copy(params)) || json_object_del(gen, "ood") < 0) {
			json_decref(gen);
			return mb_error_oom(err, "recipe params", 0);
		}
	}
	error = t->generate(&items, seed, gen ? gen : params, err);
	json_decref(gen);
	if (error < 0) {
		mb_error_prefix(err, "%s@%d generator", t->name, t->version);
		goto cleanup;
	}
	if ((error = check_ood(params, &items, "recipe", err)) < 0)
		goto cleanup;
	error = mb_dataset_render(out, len, t->name, t->version, seed, params, &items, err);
cleanup:
	mb_item_list_dispose(&items);
	return error;
}

/* --- MANIFEST --------------------------------------------------------------- */

static const char manifest_header[] =
	"# mechbench datasets MANIFEST, format 1. One frozen dataset per line:\n"
	"#   <sha256 or ->  <path relative to this folder>  <task>@<version>  <seed>  "
	"<generator params, JSON>\n"
	"# 'mechbench datasets build' regenerates the files and fills in the sha256;\n"
	"# 'mechbench datasets verify' checks them. Edit recipes here, never the files.\n";

static int next_token(const char **p, char *tok, size_t cap)
{
	size_t n;

	while (**p == ' ' || **p == '\t')
		(*p)++;
	n = strcspn(*p, " \t");
	if (n == 0 || n >= cap)
		return -1;
	memcpy(tok, *p, n);
	tok[n] = '\0';
	*p += n;
	return 0;
}

static int parse_manifest_line(mb_manifest *m, const char *text, int line, mb_error *err)
{
	char sha[80], path[1024], task[160], seed[40];
	char tname[128];
	int tver;
	int64_t seedv;
	const char *p = text;
	json_error_t jerr;
	json_t *params;
	mb_manifest_entry *e;

	if (next_token(&p, sha, sizeof(sha)) < 0 || next_token(&p, path, sizeof(path)) < 0 ||
	    next_token(&p, task, sizeof(task)) < 0 || next_token(&p, seed, sizeof(seed)) < 0 ||
	    !p[strspn(p, " \t")])
		return mb_error_set(err, MB_EINVALID, "%s:%d: expected '<sha256|->  <path>  "
				    "<task>@<version>  <seed>  <params JSON>'", m->path, line);
	if (strcmp(sha, "-") != 0 && !mb_sha256_is_hex(sha))
		return mb_error_set(err, MB_EINVALID, "%s:%d: '%s' is not a sha256 (64 lower-case "
				    "hex digits) or '-'", m->path, line, sha);
	if (!mb_file_path_is_safe(path))
		return mb_error_set(err, MB_EINVALID, "%s:%d: path '%s' must be relative, without "
				    "'..'", m->path, line, path);
	if (mb_metric_ref_parse(task, tname, sizeof(tname), &tver) < 0)
		return mb_error_set(err, MB_EINVALID, "%s:%d: '%s' is not <task>@<version>",
				    m->path, line, task);
	if (mb_parse_i64(seed, 0, INT64_MAX, &seedv, "seed", err) < 0)
		return mb_error_prefix(err, "%s:%d", m->path, line);
	while (*p == ' ' || *p == '\t')
		p++;
	params = json_loads(p, JSON_REJECT_DUPLICATES, &jerr);
	if (!params || !json_is_object(params)) {
		json_decref(params);
		return mb_error_set(err, MB_EINVALID, "%s:%d:%d: params must be a JSON object%s%s",
				    m->path, line, (int)(p - text) + 1 +
				    (params ? 0 : (jerr.column > 0 ? jerr.column - 1 : 0)),
				    params ? "" : ": ", params ? "" : jerr.text);
	}
	for (size_t i = 0; i < m->n; i++)
		if (strcmp(m->entries[i].path, path) == 0) {
			json_decref(params);
			return mb_error_set(err, MB_EINVALID, "%s:%d: %s is listed twice (also "
					    "line %d)", m->path, line, path, m->entries[i].line);
		}
	e = realloc(m->entries, (m->n + 1) * sizeof(*e));
	if (!e) {
		json_decref(params);
		return mb_error_oom(err, "manifest", (m->n + 1) * sizeof(*e));
	}
	m->entries = e;
	e = &m->entries[m->n];
	memset(e, 0, sizeof(*e));
	snprintf(e->sha256, sizeof(e->sha256), "%s", strcmp(sha, "-") == 0 ? "" : sha);
	e->path = strdup(path);
	e->task = strdup(tname);
	e->task_version = tver;
	e->seed = (uint64_t)seedv;
	e->params = params;
	e->line = line;
	m->n++;
	if (!e->path || !e->task)
		return mb_error_oom(err, "manifest", 0);
	return 0;
}

int mb_manifest_load(mb_manifest *out, const char *path, mb_error *err)
{
	char *text = NULL, *s;
	size_t len;
	int line = 0, error;

	memset(out, 0, sizeof(*out));
	error = mb_file_read_text(&text, &len, path, err);
	if (error < 0)
		return error;
	out->path = strdup(path);
	out->dir = strdup(path);
	if (!out->path || !out->dir) {
		error = mb_error_oom(err, "manifest path", 0);
		goto cleanup;
	}
	{
		char *slash = strrchr(out->dir, '/');
		if (slash)
			*slash = '\0';
		else
			out->dir[0] = '\0';
	}
	if (strlen(text) != len) {
		error = mb_error_set(err, MB_EINVALID, "%s: contains a NUL byte", path);
		goto cleanup;
	}
	for (s = text; *s;) {
		char *nl = strchr(s, '\n');
		char *p;
		if (nl)
			*nl = '\0';
		line++;
		p = s;
		while (*p == ' ' || *p == '\t' || *p == '\r')
			p++;
		if (*p && *p != '#') {
			size_t n = strlen(p);
			while (n > 0 && (p[n - 1] == '\r' || p[n - 1] == ' '))
				p[--n] = '\0';
			error = parse_manifest_line(out, p, line, err);
			if (error < 0)
				goto cleanup;
		}
		if (!nl)
			break;
		s = nl + 1;
	}
cleanup:
	free(text);
	if (error < 0)
		mb_manifest_dispose(out);
	return error;
}

int mb_manifest_save(const mb_manifest *m, mb_error *err)
{
	buf b = {0};
	int error;

	error = buf_put(&b, manifest_header, strlen(manifest_header), err);
	for (size_t i = 0; i < m->n && !error; i++) {
		const mb_manifest_entry *e = &m->entries[i];
		char *params = json_dumps(e->params, DUMP_FLAGS);
		char head[1400];
		int n;
		if (!params) {
			error = mb_error_oom(err, "manifest line", 0);
			break;
		}
		n = snprintf(head, sizeof(head), "%s  %s  %s@%d  %llu  ",
			     e->sha256[0] ? e->sha256 : "-", e->path, e->task, e->task_version,
			     (unsigned long long)e->seed);
		error = buf_put(&b, head, (size_t)n < sizeof(head) ? (size_t)n : sizeof(head) - 1,
				err);
		if (!error)
			error = buf_put(&b, params, strlen(params), err);
		if (!error)
			error = buf_put(&b, "\n", 1, err);
		free(params);
	}
	if (!error)
		error = mb_file_write_all(m->path, b.p, b.n, err);
	free(b.p);
	return error;
}

void mb_manifest_dispose(mb_manifest *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n; i++) {
		free(m->entries[i].path);
		free(m->entries[i].task);
		json_decref(m->entries[i].params);
	}
	free(m->entries);
	free(m->path);
	free(m->dir);
	memset(m, 0, sizeof(*m));
}

static int entry_task(const mb_manifest *m, const mb_manifest_entry *e, const mb_task **out,
		      mb_error *err)
{
	const mb_task *t = mb_task_find(e->task);

	if (!t)
		return mb_error_set(err, MB_ENOTFOUND, "%s:%d: unknown task '%s'", m->path, e->line,
				    e->task);
	if (t->version != e->task_version)
		return mb_error_set(err, MB_EMISMATCH,
				    "%s:%d: %s is recorded as %s@%d but this build has %s@%d; "
				    "change the line to @%d to regenerate it with the new generator",
				    m->path, e->line, e->path, e->task, e->task_version, t->name,
				    t->version, t->version);
	*out = t;
	return 0;
}

int mb_manifest_build_entry(mb_manifest *m, size_t idx, int *changed, mb_error *err)
{
	mb_manifest_entry *e = &m->entries[idx];
	const mb_task *t = NULL;
	char path[4096], sha[MB_SHA256_HEX_LEN], old_sha[MB_SHA256_HEX_LEN];
	char *text = NULL;
	size_t len;
	int error;

	*changed = 0;
	if ((error = entry_task(m, e, &t, err)) < 0 ||
	    (error = mb_file_path_join(path, sizeof(path), m->dir, e->path, err)) < 0)
		return error;
	error = mb_dataset_generate(&text, &len, t, e->seed, e->params, err);
	if (error < 0) {
		mb_error_prefix(err, "%s:%d", m->path, e->line);
		goto cleanup;
	}
	mb_sha256_hex_buf(sha, text, len);
	if (mb_sha256_hex_file(old_sha, path, NULL) < 0 || strcmp(old_sha, sha) != 0) {
		error = mb_file_write_all(path, text, len, err);
		if (error < 0)
			goto cleanup;
		*changed = 1;
	}
	if (strcmp(e->sha256, sha) != 0) {
		memcpy(e->sha256, sha, sizeof(sha));
		*changed = 1;
	}
cleanup:
	free(text);
	return error;
}

int mb_manifest_verify_entry(const mb_manifest *m, size_t idx, mb_error *err)
{
	const mb_manifest_entry *e = &m->entries[idx];
	const mb_task *t = NULL;
	mb_dataset d;
	char path[4096], sha[MB_SHA256_HEX_LEN];
	char *text = NULL;
	size_t len;
	int error;

	memset(&d, 0, sizeof(d));
	if ((error = mb_file_path_join(path, sizeof(path), m->dir, e->path, err)) < 0)
		return error;
	if (!e->sha256[0])
		return mb_error_set(err, MB_EMISMATCH, "%s:%d: %s has no sha256 yet; run "
				    "'mechbench datasets build'", m->path, e->line, e->path);
	/* The sha256 first: it says the most about an edited file. */
	if ((error = mb_file_read_text(&text, &len, path, err)) < 0)
		goto cleanup;
	mb_sha256_hex_buf(sha, text, len);
	if (strcmp(sha, e->sha256) != 0) {
		error = mb_error_set(err, MB_EMISMATCH, "%s: sha256 %s, but %s:%d says %s", path,
				     sha, m->path, e->line, e->sha256);
		goto cleanup;
	}
	error = mb_dataset_parse(&d, text, len, path, err);
	free(text);
	text = NULL;
	if (error < 0)
		goto cleanup;
	if (strcmp(d.task, e->task) != 0 || d.task_version != e->task_version ||
	    d.seed != e->seed || !json_equal(d.params, e->params)) {
		error = mb_error_set(err, MB_EMISMATCH, "%s: its header's recipe (%s@%d, seed "
				     "%llu) differs from %s:%d", path, d.task, d.task_version,
				     (unsigned long long)d.seed, m->path, e->line);
		goto cleanup;
	}
	if ((error = entry_task(m, e, &t, err)) < 0)
		goto cleanup;
	if ((error = mb_dataset_generate(&text, &len, t, e->seed, e->params, err)) < 0)
		goto cleanup;
	mb_sha256_hex_buf(sha, text, len);
	if (strcmp(sha, e->sha256) != 0)
		error = mb_error_set(err, MB_EMISMATCH, "%s: its recipe (%s@%d, seed %llu) now "
				     "generates different items (sha256 %s); the generator changed "
				     "without a version bump", path, e->task, e->task_version,
				     (unsigned long long)e->seed, sha);
cleanup:
	free(text);
	mb_dataset_dispose(&d);
	return error;
}
