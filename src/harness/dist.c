/*
 * dist.c: MPI ranks (dist.h). Every MPI call of mechbench is in this file.
 *
 * Legend: K ranks, N items of an entry, M metrics of its task.
 */
#include <mechbench/dist.h>

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mechbench/sha256.h>
#include <mechbench/shard.h>
#include <mechbench/task.h>

#ifdef MB_HAVE_MPI
#include <mpi.h>
#endif

static int g_rank = 0, g_size = 1;
static int g_agreed_failure = 0; /* the last failure was agreed by every rank */
#ifdef MB_HAVE_MPI
static int g_stderr = -1;         /* a non-root rank's own stderr, kept for aborts */
#endif

/* The rank count the launcher announced (mpirun: OMPI_COMM_WORLD_SIZE; a
 * PMI-1/2 launcher: PMI_SIZE), 0 outside an MPI job. *pmix is set when a
 * PMIx launcher (srun --mpi=pmix) started the process: it announces no
 * count, MPI_Init tells. */
static long launched_size(int *pmix)
{
	static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"};
	*pmix = getenv("PMIX_RANK") != NULL;
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
		const char *v = getenv(vars[i]);
		if (v && *v)
			return strtol(v, NULL, 10);
	}
	return 0;
}

int mb_dist_built(void)
{
#ifdef MB_HAVE_MPI
	return 1;
#else
	return 0;
#endif
}

int mb_dist_rank(void)
{
	return g_rank;
}

int mb_dist_size(void)
{
	return g_size;
}

int mb_dist_init(int *argc, char ***argv, mb_error *err)
{
	int pmix = 0;
	long announced = launched_size(&pmix);

	if (announced <= 1 && !pmix)
		return 0;
#ifdef MB_HAVE_MPI
	if (MPI_Init(argc, argv) != MPI_SUCCESS)
		return mb_error_set(err, MB_ERROR, "MPI_Init failed");
	MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
	MPI_Comm_size(MPI_COMM_WORLD, &g_size);
	if (announced > 1 && g_size != announced) {
		/* each process alone would run, and store, the whole command */
		int seen = g_size;
		MPI_Finalize();
		g_rank = 0;
		g_size = 1;
		return mb_error_set(err, MB_EINVALID, "launched as one of %ld ranks, but MPI sees "
				    "%d: check the launcher (srun --mpi=pmix, or Open MPI's mpirun "
				    "of the same installation)", announced, seen);
	}
	/* one voice: rank 0 prints, the others' messages reach it (mb_dist_agree) */
	if (g_rank != 0) {
		int null = open("/dev/null", O_WRONLY);
		fflush(stdout);
		fflush(stderr);
		g_stderr = dup(STDERR_FILENO);
		if (null >= 0) {
			dup2(null, STDOUT_FILENO);
			dup2(null, STDERR_FILENO);
			close(null);
		}
	}
	return 0;
#else
	(void)argc;
	(void)argv;
	if (announced <= 1)
		return 0; /* PMIx alone says no count: take it as one process */
	return mb_error_set(err, MB_EINVALID, "launched as one of %ld MPI ranks, but this "
			    "mechbench was built without MPI (CMake option MB_MPI; install "
			    "libopenmpi-dev); every rank would run the whole command", announced);
#endif
}

void mb_dist_finalize(int exit_code, const mb_error *err)
{
#ifdef MB_HAVE_MPI
	if (g_size <= 1) {
		int up = 0;
		MPI_Initialized(&up);
		if (up)
			MPI_Finalize();
		return;
	}
	/* 1 is an error; 2 (usage) happens on every rank alike before any work,
	 * and 3 or 4 are verdicts of rank 0 after all of it */
	if (exit_code == 1 && !g_agreed_failure) {
		if (g_rank != 0 && g_stderr >= 0 && err) {
			char line[MB_ERROR_MSG_MAX + 64];
			int w = snprintf(line, sizeof(line), "mechbench: rank %d of %d: %s\n",
					 g_rank, g_size, err->msg);
			if (w > 0 && write(g_stderr, line, (size_t)w) < 0)
				w = 0;
		}
		MPI_Abort(MPI_COMM_WORLD, 1);
	}
	MPI_Finalize();
#else
	(void)exit_code;
	(void)err;
#endif
}

int mb_dist_agree(int error, mb_error *err)
{
	g_agreed_failure = 0;
	if (g_size <= 1)
		return error;
#ifdef MB_HAVE_MPI
	{
		/* (K) one record per rank: the code, then its message */
		enum { REC = sizeof(int32_t) + MB_ERROR_MSG_MAX };
		char mine[REC];
		char *all = NULL;
		int32_t code = error < 0 ? error : 0, first = -1, verdict = 0;

		memcpy(mine, &code, sizeof(code));
		snprintf(mine + sizeof(code), MB_ERROR_MSG_MAX, "%s", error < 0 && err ? err->msg : "");
		if (g_rank == 0 && !(all = malloc((size_t)g_size * REC))) {
			/* nothing sensible to agree on without memory */
			MPI_Abort(MPI_COMM_WORLD, 1);
		}
		MPI_Gather(mine, REC, MPI_BYTE, all, REC, MPI_BYTE, 0, MPI_COMM_WORLD);
		if (g_rank == 0) {
			for (int r = 0; r < g_size && first < 0; r++) {
				int32_t c;
				memcpy(&c, all + (size_t)r * REC, sizeof(c));
				if (c < 0) {
					first = r;
					verdict = c;
				}
			}
			if (first >= 0 && err)
				mb_error_set(err, verdict, "rank %d of %d: %.*s", first, g_size,
					     MB_ERROR_MSG_MAX - 32,
					     all + (size_t)first * REC + sizeof(int32_t));
			free(all);
		}
		MPI_Bcast(&verdict, 1, MPI_INT32_T, 0, MPI_COMM_WORLD);
		if (verdict < 0 && g_rank != 0 && error >= 0 && err)
			mb_error_set(err, verdict, "another rank failed (rank 0 says which)");
		g_agreed_failure = verdict < 0;
		return verdict;
	}
#else
	(void)err;
	return error;
#endif
}

int mb_dist_bcast_strings(char ***list, size_t *n, mb_error *err)
{
	if (g_size <= 1)
		return 0;
#ifdef MB_HAVE_MPI
	{
		/* the count and the total length, then the strings back to back */
		uint64_t head[2] = {0, 0};
		char *buf = NULL;
		char **out = NULL;

		if (g_rank == 0) {
			head[0] = *n;
			for (size_t i = 0; i < *n; i++)
				head[1] += strlen((*list)[i]) + 1;
		}
		MPI_Bcast(head, 2, MPI_UINT64_T, 0, MPI_COMM_WORLD);
		if (!(buf = malloc(head[1] ? head[1] : 1)))
			MPI_Abort(MPI_COMM_WORLD, 1);
		if (g_rank == 0)
			for (size_t i = 0, at = 0; i < *n; i++) {
				size_t len = strlen((*list)[i]) + 1;
				memcpy(buf + at, (*list)[i], len);
				at += len;
			}
		MPI_Bcast(buf, (int)head[1], MPI_CHAR, 0, MPI_COMM_WORLD);
		if (g_rank == 0) {
			free(buf);
			return 0;
		}
		if (!(out = calloc(head[0] ? head[0] : 1, sizeof(*out)))) {
			free(buf);
			return mb_error_oom(err, "rank 0's list", head[0] * sizeof(*out));
		}
		for (size_t i = 0, at = 0; i < head[0]; i++) {
			size_t len = strlen(buf + at) + 1;
			if (!(out[i] = malloc(len))) {
				mb_dist_strings_free(out, i);
				free(buf);
				return mb_error_oom(err, "rank 0's list", len);
			}
			memcpy(out[i], buf + at, len);
			at += len;
		}
		free(buf);
		*list = out;
		*n = (size_t)head[0];
		return 0;
	}
#else
	(void)list;
	(void)n;
	(void)err;
	return 0;
#endif
}

void mb_dist_strings_free(char **list, size_t n)
{
	for (size_t i = 0; list && i < n; i++)
		free(list[i]);
	free(list);
}

/* Collective: 0 when this rank's artifact (prepare, task.h) is rank 0's, by
 * the sha256 of its JSON text; every rank computed it from all the entry's
 * items, so a difference is a task that is not deterministic. */
static int same_artifact(const mb_entry_result *share, mb_error *err)
{
	char hex[MB_SHA256_HEX_LEN], *text = NULL;
	char *mine[1] = {hex}, **list = mine;
	size_t n = 1;
	int error = 0, failed = 0;

	if (g_size <= 1)
		return 0;
	if (share->artifact &&
	    !(text = json_dumps(share->artifact, JSON_COMPACT | JSON_REAL_PRECISION(17))))
		failed = mb_error_oom(err, "artifact text", 0);
	mb_sha256_hex_buf(hex, text ? text : "", text ? strlen(text) : 0);
	free(text);
	/* every rank joins the broadcast, also one that failed above */
	if ((error = mb_dist_bcast_strings(&list, &n, err)) < 0)
		return error;
	if (failed)
		error = failed;
	if (g_rank != 0) {
		if (!failed && (n != 1 || strcmp(list[0], hex) != 0))
			error = mb_error_set(err, MB_EMISMATCH, "entry %s: artifact sha256 %.16s..., "
					     "but rank 0's is %.16s...: the task's prepare is not "
					     "deterministic", share->name, hex, n ? list[0] : "");
		mb_dist_strings_free(list, n);
	}
	return error;
}

int mb_dist_run_entry(void *payload, mb_entry_result *out, const mb_spec *spec,
		      const mb_spec_entry *e, const mb_dataset *d, const char *root,
		      const char *model_dir, const char *model_label, const mb_runner_opts *opts,
		      mb_error *err)
{
	mb_shard mine = {(unsigned)g_rank, (unsigned)g_size};
	mb_runner_opts plain = *opts;
	mb_entry_result share;
	mb_dataset view;
	size_t *idx = NULL, n = 0;
	int error;
#ifdef MB_HAVE_MPI
	double started = mb_runner_now();
#endif

	(void)payload;
	memset(out, 0, sizeof(*out));
	memset(&share, 0, sizeof(share));
	memset(&view, 0, sizeof(view));
	plain.split = NULL;
	plain.progress = opts->progress && g_rank == 0;
	if ((error = mb_shard_items(&idx, &n, d, mine, err)) == 0 &&
	    (error = mb_shard_view(&view, d, idx, n, err)) == 0)
		error = mb_runner_run_values(&share, e, d, &view, root, model_dir, model_label,
					     &plain, err);
	mb_shard_view_dispose(&view);
	free(idx);
	idx = NULL;
	if ((error = mb_dist_agree(error, err)) < 0 ||
	    (error = mb_dist_agree(same_artifact(&share, err), err)) < 0)
		goto cleanup;
#ifdef MB_HAVE_MPI
	if (g_size > 1) {
		size_t nm = share.n_metrics, N = d->items.n;
		int *counts = NULL, *displs = NULL;
		double *recv = NULL, *values = NULL; /* (N, M) by rank, then by item */

		if (g_rank == 0) {
			counts = calloc((size_t)g_size, sizeof(*counts));
			displs = calloc((size_t)g_size, sizeof(*displs));
			recv = malloc((N ? N : 1) * (nm ? nm : 1) * sizeof(*recv));
			values = malloc((N ? N : 1) * (nm ? nm : 1) * sizeof(*values));
			if (!counts || !displs || !recv || !values)
				MPI_Abort(MPI_COMM_WORLD, 1);
			for (int r = 0, at = 0; r < g_size; r++) {
				/* rank r holds the items of key ranks r, r + K, ... */
				size_t nr = N > (size_t)r ? (N - (size_t)r + (size_t)g_size - 1) /
						(size_t)g_size : 0;
				counts[r] = (int)(nr * nm);
				displs[r] = at;
				at += counts[r];
			}
		}
		MPI_Gatherv(share.values, (int)(share.n_items * nm), MPI_DOUBLE, recv, counts,
			    displs, MPI_DOUBLE, 0, MPI_COMM_WORLD);
		if (g_rank == 0) {
			for (int r = 0; r < g_size && error == 0; r++) {
				mb_shard part = {(unsigned)r, (unsigned)g_size};
				if ((error = mb_shard_items(&idx, &n, d, part, err)) < 0)
					break;
				MB_ASSERT((int)(n * nm) == counts[r]);
				for (size_t j = 0; j < n; j++)
					memcpy(values + idx[j] * nm, recv + (size_t)displs[r] + j * nm,
					       nm * sizeof(*values));
				free(idx);
				idx = NULL;
			}
			if (error == 0) {
				error = mb_shard_whole_entry(out, &share, d, values, err);
				values = NULL; /* taken over */
			}
			if (error == 0) {
				out->seconds = mb_runner_now() - started;
				if ((error = mb_runner_entry_finish(out, spec, e, d, err)) < 0)
					mb_entry_result_dispose(out);
			}
		}
		free(counts);
		free(displs);
		free(recv);
		free(values);
		if (g_rank == 0) {
			mb_entry_result_dispose(&share);
			return error;
		}
		*out = share;
		return 0;
	}
#endif
	/* one rank: the whole entry is this rank's share */
	*out = share;
	memset(&share, 0, sizeof(share));
	if ((error = mb_runner_entry_finish(out, spec, e, d, err)) < 0)
		mb_entry_result_dispose(out);
cleanup:
	mb_entry_result_dispose(&share);
	return error;
}

/* --- whole units ------------------------------------------------------------------ */

int mb_dist_whole_units(size_t n)
{
	return g_size > 1 && n >= (size_t)g_size;
}

#ifdef MB_HAVE_MPI
/* The unit as JSON: {"unit", "entries": [{"files", "seconds", "values",
 * "figures"}]}, or {"unit", "error"}. Reals print with 17 significant digits
 * (jansson's default), which read back to the same bits. */
static json_t *pack_unit(const char *label, const mb_entry_result *entries,
			 const mb_figure_list *figs, size_t n, const char *error)
{
	json_t *doc = error ? json_pack("{s:s, s:s}", "unit", label, "error", error)
			    : json_pack("{s:s, s:[]}", "unit", label, "entries");
	json_t *list = doc && !error ? json_object_get(doc, "entries") : NULL;

	for (size_t i = 0; list && i < n; i++) {
		const mb_entry_result *e = &entries[i];
		json_t *vals = json_array(), *fl = json_array();
		json_t *files = mb_file_digests_to_json(e->model_files, e->n_model_files);
		int bad = !vals || !fl || !files;
		for (size_t v = 0; !bad && v < e->n_items * e->n_metrics; v++)
			bad = json_array_append_new(vals, json_real(e->values[v])) < 0;
		for (size_t f = 0; !bad && f < figs[i].n; f++)
			bad = json_array_append_new(fl, mb_figure_to_json(&figs[i].items[f])) < 0;
		if (bad || json_array_append_new(list, json_pack("{s:o, s:f, s:o, s:o, s:O?}",
								 "files", files, "seconds",
								 e->seconds, "values", vals,
								 "figures", fl, "artifact",
								 e->artifact)) < 0) {
			if (bad) {
				json_decref(vals);
				json_decref(fl);
				json_decref(files);
			}
			json_decref(doc);
			return NULL;
		}
	}
	return doc;
}

#endif

int mb_dist_send_unit(const char *label, const mb_entry_result *entries,
		      const mb_figure_list *figs, size_t n, int error, const mb_error *err)
{
#ifdef MB_HAVE_MPI
	json_t *doc = pack_unit(label, entries, figs, n, error < 0 ? err->msg : NULL);
	char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
	uint64_t len = text ? strlen(text) + 1 : 0;

	json_decref(doc);
	if (!text)
		MPI_Abort(MPI_COMM_WORLD, 1); /* rank 0 waits for this unit */
	MPI_Send(&len, 1, MPI_UINT64_T, 0, 1, MPI_COMM_WORLD);
	MPI_Send(text, (int)len, MPI_CHAR, 0, 1, MPI_COMM_WORLD);
	free(text);
	/* rank 0 names this failure; no abort from here (mb_dist_finalize) */
	if (error < 0)
		g_agreed_failure = 1;
#else
	(void)label;
	(void)entries;
	(void)figs;
	(void)n;
	(void)err;
	MB_ASSERT(!"mb_dist_send_unit without MPI");
#endif
	return error;
}

#ifdef MB_HAVE_MPI
/* entries[i] from its packed form p: header from the spec's entry, items
 * from the dataset, aggregates computed here. */
static int unpack_entry(mb_entry_result *out, const json_t *p, const mb_spec *spec, size_t i,
			const mb_dataset *d, const char *label, mb_error *err)
{
	const mb_spec_entry *e = &spec->entries[i];
	const mb_task *t = e->task;
	json_t *files = json_object_get(p, "files"), *vals = json_object_get(p, "values");
	mb_entry_result head;
	double *values = NULL; /* (N, M) */
	size_t nv = d->items.n * t->n_metrics;
	int error = 0;

	memset(&head, 0, sizeof(head));
	if (!json_is_array(files) || !json_is_array(vals) || json_array_size(vals) != nv)
		return mb_error_set(err, MB_EINVALID, "checkpoint %s: entry %s: a rank sent %zu "
				    "values, expected %zu", label, e->name,
				    json_is_array(vals) ? json_array_size(vals) : 0, nv);
	head.name = e->name;
	head.task = (char *)t->name;
	head.task_version = t->version;
	head.model = (char *)label;
	head.dataset = e->dataset;
	head.params = e->params;
	head.artifact = json_object_get(p, "artifact"); /* borrowed; null when none */
	if (json_is_null(head.artifact))
		head.artifact = NULL;
	memcpy(head.dataset_sha256, d->sha256, sizeof(head.dataset_sha256));
	head.seconds = json_real_value(json_object_get(p, "seconds"));
	head.n_metrics = t->n_metrics;
	head.n_model_files = json_array_size(files);
	head.metrics = calloc(t->n_metrics ? t->n_metrics : 1, sizeof(*head.metrics));
	head.model_files = calloc(head.n_model_files ? head.n_model_files : 1,
				  sizeof(*head.model_files));
	values = malloc((nv ? nv : 1) * sizeof(*values));
	if (!head.metrics || !head.model_files || !values) {
		error = mb_error_oom(err, "received entry", nv * sizeof(*values));
		goto cleanup;
	}
	for (size_t m = 0; m < t->n_metrics; m++)
		head.metrics[m] = (mb_metric_info){(char *)t->metrics[m].name,
						   t->metrics[m].version, t->metrics[m].kind,
						   t->metrics[m].direction};
	for (size_t f = 0; f < head.n_model_files; f++) {
		json_t *jf = json_array_get(files, f);
		const char *path = json_string_value(json_object_get(jf, "path"));
		const char *sha = json_string_value(json_object_get(jf, "sha256"));
		if (!path || !sha) {
			error = mb_error_set(err, MB_EINVALID, "checkpoint %s: a rank sent a bad model "
					     "file digest", label);
			goto cleanup;
		}
		head.model_files[f].path = (char *)path;
		snprintf(head.model_files[f].sha256, sizeof(head.model_files[f].sha256), "%s", sha);
		head.model_files[f].bytes =
			(uint64_t)json_integer_value(json_object_get(jf, "bytes"));
	}
	for (size_t v = 0; v < nv; v++)
		values[v] = json_real_value(json_array_get(vals, v));
	error = mb_shard_whole_entry(out, &head, d, values, err);
	values = NULL; /* taken over */
	if (error == 0 && (error = mb_runner_entry_finish(out, spec, e, d, err)) < 0)
		mb_entry_result_dispose(out);
cleanup:
	free(values);
	free(head.metrics);
	free(head.model_files);
	return error;
}

#endif

int mb_dist_recv_unit(mb_entry_result *entries, size_t *n_done, mb_figure_list *figs, int from,
		      const mb_spec *spec, const mb_dataset *datasets, const char *label,
		      mb_error *err)
{
#ifdef MB_HAVE_MPI
	uint64_t len = 0;
	char *text = NULL;
	json_t *doc = NULL, *list;
	json_error_t jerr;
	const char *unit, *msg;
	int error = 0;

	MPI_Recv(&len, 1, MPI_UINT64_T, from, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
	if (!(text = malloc(len ? len : 1)))
		MPI_Abort(MPI_COMM_WORLD, 1);
	MPI_Recv(text, (int)len, MPI_CHAR, from, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
	doc = json_loads(text, 0, &jerr);
	free(text);
	unit = json_string_value(json_object_get(doc, "unit"));
	msg = json_string_value(json_object_get(doc, "error"));
	list = json_object_get(doc, "entries");
	if (!unit || strcmp(unit, label) != 0) {
		error = mb_error_set(err, MB_EINVALID, "rank %d of %d sent checkpoint %s, expected %s",
				     from, g_size, unit ? unit : "(unreadable)", label);
	} else if (msg) {
		error = mb_error_set(err, MB_ERROR, "rank %d of %d: %s", from, g_size, msg);
	} else if (json_array_size(list) != spec->n_entries) {
		error = mb_error_set(err, MB_EINVALID, "rank %d of %d sent %zu entries of checkpoint "
				     "%s, expected %zu", from, g_size, json_array_size(list), label,
				     spec->n_entries);
	}
	for (size_t i = 0; !error && i < spec->n_entries; i++) {
		json_t *p = json_array_get(list, i), *fl = json_object_get(p, "figures");
		if ((error = unpack_entry(&entries[i], p, spec, i, &datasets[i], label, err)) < 0)
			break;
		*n_done = i + 1;
		for (size_t f = 0; !error && f < json_array_size(fl); f++)
			error = mb_figure_list_add_json(&figs[i], json_array_get(fl, f), label, err);
	}
	json_decref(doc);
	return error;
#else
	(void)entries;
	(void)n_done;
	(void)figs;
	(void)from;
	(void)spec;
	(void)datasets;
	(void)label;
	return mb_error_set(err, MB_ERROR, "mb_dist_recv_unit without MPI");
#endif
}

void mb_dist_drain_units(size_t failed, size_t n)
{
#ifdef MB_HAVE_MPI
	for (size_t u = failed + 1; u < n; u++) {
		int from = (int)(u % (size_t)g_size);
		uint64_t len = 0;
		char *text;
		if (from == 0)
			continue;
		MPI_Recv(&len, 1, MPI_UINT64_T, from, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
		if (!(text = malloc(len ? len : 1)))
			MPI_Abort(MPI_COMM_WORLD, 1);
		MPI_Recv(text, (int)len, MPI_CHAR, from, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
		free(text);
	}
	g_agreed_failure = 1; /* every rank has ended its units: no abort */
#else
	(void)failed;
	(void)n;
#endif
}
