/*
 * manifest.c: the MANIFEST of a committed zoo model (zoo.h): read, write and
 * check the sha256 of every file.
 */
#include <mechbench/zoo.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <mechbench/file.h>
#include <mechbench/json.h>
#include <mechbench/sha256.h>

static int is_hex64(const char *s)
{
	size_t i;

	for (i = 0; s[i]; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return i == 64;
}

static int copy_field(const mb_json_doc *doc, json_t *root, const char *key, char *dst,
		      size_t cap, mb_error *err)
{
	const char *s = NULL;
	int error = mb_json_get_string(doc, root, "", key, 1, &s, err);

	if (error < 0)
		return error;
	if (strlen(s) >= cap)
		return mb_json_field_error(doc, err, MB_EINVALID, key,
					   "longer than %zu characters", cap - 1);
	memcpy(dst, s, strlen(s) + 1);
	return 0;
}

static int manifest_from_doc(mb_zoo_manifest *out, const mb_json_doc *doc, mb_error *err);

int mb_zoo_manifest_read(mb_zoo_manifest *out, const char *path, mb_error *err)
{
	mb_json_doc doc;
	int error;

	memset(out, 0, sizeof(*out));
	error = mb_json_doc_load(&doc, path, err);
	if (error < 0)
		return error;
	error = manifest_from_doc(out, &doc, err);
	mb_json_doc_dispose(&doc);
	return error;
}

int mb_zoo_manifest_parse(mb_zoo_manifest *out, const char *text, size_t len, const char *name,
			  mb_error *err)
{
	mb_json_doc doc;
	int error;

	memset(out, 0, sizeof(*out));
	error = mb_json_doc_parse(&doc, text, len, name, err);
	if (error < 0)
		return error;
	error = manifest_from_doc(out, &doc, err);
	mb_json_doc_dispose(&doc);
	return error;
}

static int manifest_from_doc(mb_zoo_manifest *out, const mb_json_doc *doc, mb_error *err)
{
	static const char *const keys[] = {"name",    "preset", "seed",   "command",
					   "training_seconds", "machine", "threads",
					   "commit",  "files",  "gemm", NULL};
	json_t *files = NULL;
	const char *fname;
	json_t *v;
	int64_t seed = 0, threads = 0;
	int error;

	if (!json_is_object(doc->root)) {
		error = mb_json_field_error(doc, err, MB_EINVALID, "", "must be an object");
		return error;
	}
	if ((error = mb_json_check_keys(doc, doc->root, "", keys, err)) < 0 ||
	    (error = copy_field(doc, doc->root, "name", out->name, sizeof(out->name), err)) < 0 ||
	    (error = copy_field(doc, doc->root, "preset", out->preset, sizeof(out->preset), err)) <
		    0 ||
	    (error = copy_field(doc, doc->root, "command", out->command, sizeof(out->command),
				err)) < 0 ||
	    (error = copy_field(doc, doc->root, "machine", out->machine, sizeof(out->machine),
				err)) < 0 ||
	    (error = copy_field(doc, doc->root, "commit", out->commit, sizeof(out->commit), err)) <
		    0 ||
	    (error = mb_json_get_int(doc, doc->root, "", "seed", 1, 0, INT64_MAX, &seed, err)) <
		    0 ||
	    (error = mb_json_get_int(doc, doc->root, "", "threads", 1, 1, 4096, &threads, err)) <
		    0 ||
	    (error = mb_json_get_number(doc, doc->root, "", "training_seconds", 1,
					&out->training_seconds, err)) < 0 ||
	    (error = mb_json_get_object(doc, doc->root, "", "files", 1, &files, err)) < 0)
		return error;
	out->seed = (uint64_t)seed;
	out->threads = (int)threads;
	/* "gemm" (the backend that trained it, gemm.h's mb_gemm_describe) is
	 * absent from MANIFESTs written before the backend layer: those ran
	 * OpenBLAS with whatever kernel the machine picked. */
	out->gemm[0] = '\0';
	if (json_object_get(doc->root, "gemm") &&
	    (error = copy_field(doc, doc->root, "gemm", out->gemm, sizeof(out->gemm), err)) < 0)
		return error;
	if (json_object_size(files) == 0 || json_object_size(files) > MB_ZOO_MANIFEST_MAX_FILES) {
		error = mb_json_field_error(doc, err, MB_EINVALID, "files",
					    "must list 1 to %d files", MB_ZOO_MANIFEST_MAX_FILES);
		return error;
	}
	json_object_foreach(files, fname, v) {
		char at[128];
		mb_json_path_key(at, sizeof(at), "files", fname);
		if (!json_is_string(v) || !is_hex64(json_string_value(v))) {
			error = mb_json_field_error(doc, err, MB_EINVALID, at,
						    "must be 64 lower-case hex digits (sha256)");
			return error;
		}
		if (strlen(fname) == 0 || strlen(fname) >= sizeof(out->files[0]) ||
		    strchr(fname, '/') || strcmp(fname, "MANIFEST") == 0 || fname[0] == '.') {
			error = mb_json_field_error(doc, err, MB_EINVALID, at,
						    "must be a plain file name other than MANIFEST");
			return error;
		}
		/* Keep names sorted (jansson iterates in insertion order). */
		size_t k = out->nfiles;
		while (k > 0 && strcmp(out->files[k - 1], fname) > 0) {
			memcpy(out->files[k], out->files[k - 1], sizeof(out->files[0]));
			memcpy(out->sha256[k], out->sha256[k - 1], sizeof(out->sha256[0]));
			k--;
		}
		snprintf(out->files[k], sizeof(out->files[0]), "%s", fname);
		snprintf(out->sha256[k], sizeof(out->sha256[0]), "%s", json_string_value(v));
		out->nfiles++;
	}
	return 0;
}

int mb_zoo_manifest_write(const mb_zoo_manifest *m, const char *path, mb_error *err)
{
	json_t *root = json_object(), *files = json_object();
	mb_file_atomic f;
	char *text = NULL;
	int error = 0, bad = 0;

	if (!root || !files) {
		json_decref(root);
		json_decref(files);
		return mb_error_oom(err, "MANIFEST", 0);
	}
	for (size_t i = 0; i < m->nfiles; i++)
		bad |= json_object_set_new(files, m->files[i], json_string(m->sha256[i]));
	bad |= json_object_set_new(root, "name", json_string(m->name));
	bad |= json_object_set_new(root, "preset", json_string(m->preset));
	bad |= json_object_set_new(root, "seed", json_integer((json_int_t)m->seed));
	bad |= json_object_set_new(root, "command", json_string(m->command));
	bad |= json_object_set_new(root, "training_seconds", json_real(m->training_seconds));
	bad |= json_object_set_new(root, "machine", json_string(m->machine));
	bad |= json_object_set_new(root, "threads", json_integer(m->threads));
	bad |= json_object_set_new(root, "commit", json_string(m->commit));
	if (m->gemm[0])
		bad |= json_object_set_new(root, "gemm", json_string(m->gemm));
	bad |= json_object_set_new(root, "files", files);
	if (bad) {
		error = mb_error_oom(err, "MANIFEST", 0);
		goto cleanup;
	}
	text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(10));
	if (!text) {
		error = mb_error_oom(err, "MANIFEST text", 0);
		goto cleanup;
	}
	error = mb_file_atomic_open(&f, path, err);
	if (error < 0)
		goto cleanup;
	if ((error = mb_file_atomic_write(&f, text, strlen(text), err)) < 0 ||
	    (error = mb_file_atomic_write(&f, "\n", 1, err)) < 0) {
		mb_file_atomic_abort(&f);
		goto cleanup;
	}
	error = mb_file_atomic_commit(&f, err);
cleanup:
	free(text);
	json_decref(root);
	return error;
}

int mb_zoo_manifest_check(const mb_zoo_manifest *m, const char *dir, mb_error *err)
{
	char path[4096], hex[MB_SHA256_HEX_LEN];
	DIR *d;
	struct dirent *e;
	int error = 0;

	for (size_t i = 0; i < m->nfiles; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, m->files[i]);
		error = mb_sha256_hex_file(hex, path, err);
		if (error < 0)
			return error;
		if (strcmp(hex, m->sha256[i]) != 0)
			return mb_error_set(err, MB_EMISMATCH,
					    "%s: sha256 %s differs from the MANIFEST's %s", path, hex,
					    m->sha256[i]);
	}
	d = opendir(dir);
	if (!d)
		return mb_error_set(err, MB_EIO, "%s: %s", dir, strerror(errno));
	while ((e = readdir(d)) != NULL) {
		struct stat st;
		size_t i;
		if (strcmp(e->d_name, "MANIFEST") == 0 || e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
			continue;
		for (i = 0; i < m->nfiles; i++)
			if (strcmp(m->files[i], e->d_name) == 0)
				break;
		if (i == m->nfiles) {
			error = mb_error_set(err, MB_EMISMATCH, "%s: file not listed in the MANIFEST",
					     path);
			break;
		}
	}
	closedir(d);
	return error;
}
