/*
 * model_digest.c: the fingerprint of a model folder (mb_model_digest,
 * runner.h): sha256 of exactly the files a model is loaded from, never of
 * whatever else lies in the folder (a zoo output folder holds every
 * checkpoint in sub-folders; a link may point anywhere).
 */
/* realpath is XSI */
#define _XOPEN_SOURCE 700

#include <mechbench/runner.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include <mechbench/file.h>
#include <mechbench/sha256.h>

/* The files a model is loaded from, in the folder's top level: the engine's
 * config, weights (one file, or an index and the shards it names) and
 * tokenizer (tokenizer.json, or GPT-2's vocab.json + merges.txt), the zoo's MANIFEST and training state, and the synthetic
 * task's model. A new loader that reads another file adds it here. */
static const char *const model_files[] = {
	"MANIFEST",       "config.json",    "merges.txt",          "model.safetensors",
	"model.safetensors.index.json",     "synthetic.json", "tokenizer.json",
	"training_state.json",              "vocab.json",
};

typedef struct digests {
	mb_file_digest *d;
	size_t n, cap;
} digests;

static int has(const digests *out, const char *rel)
{
	for (size_t i = 0; i < out->n; i++)
		if (strcmp(out->d[i].path, rel) == 0)
			return 1;
	return 0;
}

/* Hashes dir/rel when it exists (*found set); a link must resolve inside
 * the folder (root_real) to a regular file; anything but a regular file is
 * refused. */
static int add_file(digests *out, int *found, const char *dir, const char *root_real,
		    const char *rel, mb_error *err)
{
	char path[4096], real[PATH_MAX];
	struct stat st;
	size_t rl = strlen(root_real);
	mb_file_digest *f;
	int error;

	*found = 0;
	if ((error = mb_file_path_join(path, sizeof(path), dir, rel, err)) < 0)
		return error;
	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		return mb_error_set(err, MB_EIO, "%s: %s", path, strerror(errno));
	}
	if (S_ISLNK(st.st_mode)) {
		if (!realpath(path, real))
			return mb_error_set(err, MB_EINVALID, "%s: a symbolic link that does not "
					    "resolve: %s", path, strerror(errno));
		if (strncmp(real, root_real, rl) != 0 || real[rl] != '/')
			return mb_error_set(err, MB_EINVALID, "%s: a symbolic link out of the model "
					    "folder (to %s); model files must lie inside it", path, real);
		if (stat(real, &st) < 0)
			return mb_error_set(err, MB_EIO, "%s: %s", real, strerror(errno));
	}
	if (!S_ISREG(st.st_mode))
		return mb_error_set(err, MB_EINVALID, "%s: not a regular file (a %s); a model file "
				    "must be one", path, S_ISDIR(st.st_mode) ? "folder"
				    : S_ISFIFO(st.st_mode) ? "named pipe" : "special file");
	*found = 1;
	if (has(out, rel))
		return 0;
	if (out->n == out->cap) {
		size_t ncap = out->cap ? out->cap * 2 : 8;
		mb_file_digest *nd = realloc(out->d, ncap * sizeof(*nd));
		if (!nd)
			return mb_error_oom(err, "model digests", ncap * sizeof(*nd));
		out->d = nd;
		out->cap = ncap;
	}
	f = &out->d[out->n];
	memset(f, 0, sizeof(*f));
	f->bytes = (uint64_t)st.st_size;
	f->path = malloc(strlen(rel) + 1);
	if (!f->path)
		return mb_error_oom(err, "model file name", strlen(rel) + 1);
	memcpy(f->path, rel, strlen(rel) + 1);
	out->n++;
	return mb_sha256_hex_file(f->sha256, path, err);
}

/* The shards model.safetensors.index.json names in its weight_map. */
static int add_shards(digests *out, const char *dir, const char *root_real, mb_error *err)
{
	char path[4096];
	json_error_t je;
	json_t *doc, *map, *v;
	const char *k;
	int error;

	if ((error = mb_file_path_join(path, sizeof(path), dir, "model.safetensors.index.json",
				       err)) < 0)
		return error;
	doc = json_load_file(path, 0, &je);
	if (!doc)
		return mb_error_set(err, MB_EINVALID, "%s: line %d column %d: %s", path, je.line,
				    je.column, je.text);
	map = json_object_get(doc, "weight_map");
	if (!json_is_object(map)) {
		json_decref(doc);
		return mb_error_set(err, MB_EINVALID, "%s: weight_map: expected an object", path);
	}
	json_object_foreach(map, k, v) {
		const char *shard = json_string_value(v);
		int found = 0;
		if (!shard || !mb_file_path_is_safe(shard)) {
			error = mb_error_set(err, MB_EINVALID, "%s: weight_map.%s: expected a relative "
					     "path inside the folder", path, k);
			break;
		}
		if ((error = add_file(out, &found, dir, root_real, shard, err)) < 0)
			break;
		if (!found) {
			error = mb_error_set(err, MB_ENOTFOUND, "%s: weight_map.%s: shard %s is missing",
					     path, k, shard);
			break;
		}
	}
	json_decref(doc);
	return error;
}

static int cmp_digest(const void *a, const void *b)
{
	return strcmp(((const mb_file_digest *)a)->path, ((const mb_file_digest *)b)->path);
}

int mb_model_digest(mb_file_digest **out, size_t *n, const char *dir, mb_error *err)
{
	digests d = {0};
	char root_real[PATH_MAX];
	struct stat st;
	int error = 0, found = 0, index = 0;

	*out = NULL;
	*n = 0;
	if (stat(dir, &st) < 0)
		return mb_error_set(err, errno == ENOENT ? MB_ENOTFOUND : MB_EIO, "%s: %s", dir,
				    strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return mb_error_set(err, MB_EINVALID, "%s: not a folder", dir);
	if (!realpath(dir, root_real))
		return mb_error_set(err, MB_EIO, "%s: %s", dir, strerror(errno));
	for (size_t i = 0; i < sizeof(model_files) / sizeof(model_files[0]) && !error; i++) {
		error = add_file(&d, &found, dir, root_real, model_files[i], err);
		if (found && strcmp(model_files[i], "model.safetensors.index.json") == 0)
			index = 1;
	}
	if (!error && index)
		error = add_shards(&d, dir, root_real, err);
	if (!error && d.n == 0)
		error = mb_error_set(err, MB_EINVALID, "%s: the model folder holds none of the files a "
				     "model is loaded from (config.json, model.safetensors, "
				     "tokenizer.json, synthetic.json, ...)", dir);
	if (error < 0) {
		mb_file_digests_free(d.d, d.n);
		return error;
	}
	qsort(d.d, d.n, sizeof(*d.d), cmp_digest);
	*out = d.d;
	*n = d.n;
	return 0;
}
