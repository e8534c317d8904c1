/* cmd_inspect.c: `mechbench inspect FILE [--stats]`: what is in a tensor file. */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/dtype.h>
#include <mechbench/json.h>
#include <mechbench/npy.h>
#include <mechbench/safetensors.h>

typedef struct inspect_args {
	int stats;
} inspect_args;

static const mb_cli_opt inspect_opts[] = {
	{MB_OPT(FLAG, "--stats", inspect_args, stats),
	 .help = "also min, max and mean of the finite values of each tensor, and the count of "
		 "NaN and infinite values"},
};

static const mb_cli_cmd inspect_cmd = {
	.name = "inspect",
	.opts = inspect_opts,
	.n_opts = MB_CLI_N(inspect_opts),
	.operands = "FILE",
	.min_operands = 1,
	.max_operands = 1,
	.about =
	"Validates a tensor file and lists what it holds:\n"
	"  .safetensors  every tensor (name, dtype, shape, byte range) and __metadata__\n"
	"  .npy          dtype and shape\n"
	"  .json         top-level type and keys (syntax check)\n"
	"Files with other names are recognised by content (.npy magic) or refused.\n",
	.notes =
	"A malformed file gives one line on stderr naming the file and the field at\n"
	"fault, and exit status 1.\n",
};

typedef enum kind { KIND_SAFETENSORS, KIND_NPY, KIND_JSON, KIND_UNKNOWN } kind;

static int ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && strcmp(s + n - m, suffix) == 0;
}

static kind guess_kind(const char *path)
{
	FILE *f;
	unsigned char magic[6];
	size_t got;

	if (ends_with(path, ".safetensors"))
		return KIND_SAFETENSORS;
	if (ends_with(path, ".npy"))
		return KIND_NPY;
	if (ends_with(path, ".json"))
		return KIND_JSON;
	f = fopen(path, "rb");
	if (!f)
		return KIND_UNKNOWN;
	got = fread(magic, 1, sizeof(magic), f);
	fclose(f);
	return got == 6 && memcmp(magic, "\x93NUMPY", 6) == 0 ? KIND_NPY : KIND_UNKNOWN;
}

/* Summary of one tensor's values, accumulated in index order (deterministic). */
typedef struct stats {
	double min, max, sum;
	size_t finite, nan, inf;
} stats;

static double element(const unsigned char *p, mb_dtype t, size_t i)
{
	switch (t) {
	case MB_DTYPE_F32: {
		float x;
		memcpy(&x, p + 4 * i, 4);
		return x;
	}
	case MB_DTYPE_F16:
	case MB_DTYPE_BF16: {
		uint16_t h = (uint16_t)(p[2 * i] | p[2 * i + 1] << 8);
		return t == MB_DTYPE_F16 ? mb_f16_to_f32(h) : mb_bf16_to_f32(h);
	}
	case MB_DTYPE_F64: {
		double x;
		memcpy(&x, p + 8 * i, 8);
		return x;
	}
	case MB_DTYPE_I32: {
		int32_t x;
		memcpy(&x, p + 4 * i, 4);
		return x;
	}
	case MB_DTYPE_I64: {
		int64_t x;
		memcpy(&x, p + 8 * i, 8);
		return (double)x;
	}
	case MB_DTYPE_U8:
	case MB_DTYPE_BOOL: return p[i];
	}
	return 0;
}

static void compute_stats(stats *s, const void *data, mb_dtype t, size_t n)
{
	memset(s, 0, sizeof(*s));
	for (size_t i = 0; i < n; i++) {
		double x = element(data, t, i);
		if (isnan(x)) {
			s->nan++;
			continue;
		}
		if (isinf(x)) {
			s->inf++;
			continue;
		}
		if (s->finite == 0 || x < s->min)
			s->min = x;
		if (s->finite == 0 || x > s->max)
			s->max = x;
		s->sum += x;
		s->finite++;
	}
}

/* Nine significant digits print any float32 exactly; integer tensors get
 * seventeen, so values up to 2^53 print exactly. */
static void print_stats(const stats *s, mb_dtype t)
{
	int digits = t == MB_DTYPE_I32 || t == MB_DTYPE_I64 || t == MB_DTYPE_U8 ? 17 : 9;

	if (s->finite)
		printf("  min %.*g  max %.*g  mean %.*g", digits, s->min, digits, s->max, digits,
		       s->sum / (double)s->finite);
	else
		printf("  min -  max -  mean -");
	if (s->nan || s->inf)
		printf("  NON-FINITE: %zu NaN, %zu Inf", s->nan, s->inf);
	else
		printf("  all finite");
}

static void format_shape(char *buf, size_t cap, int ndim, const int64_t *shape)
{
	size_t k = (size_t)snprintf(buf, cap, "(");
	for (int i = 0; i < ndim && k < cap; i++)
		k += (size_t)snprintf(buf + k, cap - k, i ? ", %lld" : "%lld", (long long)shape[i]);
	if (k < cap)
		snprintf(buf + k, cap - k, "%s)", ndim == 1 ? "," : "");
}

static int inspect_safetensors(const char *path, int with_stats)
{
	mb_safetensors *st;
	mb_error err;
	size_t n, width = 4;
	char shape[256];

	if (mb_safetensors_open(&st, path, &err) < 0)
		return mb_cli_fail(&err);
	n = mb_safetensors_count(st);
	printf("%s: safetensors, %zu tensor%s, %zu metadata entr%s\n", path, n, n == 1 ? "" : "s",
	       mb_safetensors_metadata_count(st),
	       mb_safetensors_metadata_count(st) == 1 ? "y" : "ies");
	for (size_t i = 0; i < mb_safetensors_metadata_count(st); i++) {
		const char *k, *v;
		if (mb_safetensors_metadata_at(st, i, &k, &v) == 0)
			printf("metadata  %s = %s\n", k, v);
	}
	for (size_t i = 0; i < n; i++) {
		size_t w = strlen(mb_safetensors_at(st, i)->name);
		if (w > width)
			width = w;
	}
	if (width > 60)
		width = 60;
	for (size_t i = 0; i < n; i++) {
		const mb_st_tensor *t = mb_safetensors_at(st, i);
		format_shape(shape, sizeof(shape), t->ndim, t->shape);
		printf("tensor  %-*s  %-4s  %-16s  bytes [%zu, %zu)", (int)width, t->name,
		       mb_dtype_name(t->dtype), shape, t->begin, t->end);
		if (with_stats) {
			stats s;
			compute_stats(&s, mb_safetensors_data(st, t), t->dtype, t->numel);
			print_stats(&s, t->dtype);
		}
		printf("\n");
	}
	mb_safetensors_free(st);
	return MB_EXIT_OK;
}

static int inspect_npy(const char *path, int with_stats)
{
	mb_npy a;
	mb_error err;
	char shape[256];

	if (mb_npy_read(&a, path, &err) < 0)
		return mb_cli_fail(&err);
	format_shape(shape, sizeof(shape), a.ndim, a.shape);
	printf("%s: npy, dtype %s, shape %s, %zu element%s", path, mb_dtype_name(a.dtype), shape,
	       a.numel, a.numel == 1 ? "" : "s");
	if (with_stats) {
		stats s;
		compute_stats(&s, a.data, a.dtype, a.numel);
		print_stats(&s, a.dtype);
	}
	printf("\n");
	mb_npy_dispose(&a);
	return MB_EXIT_OK;
}

static int inspect_json(const char *path)
{
	mb_json_doc doc;
	mb_error err;

	if (mb_json_doc_load(&doc, path, &err) < 0)
		return mb_cli_fail(&err);
	if (json_is_object(doc.root)) {
		const char *key;
		json_t *v;
		printf("%s: JSON object with %zu key%s\n", path, json_object_size(doc.root),
		       json_object_size(doc.root) == 1 ? "" : "s");
		json_object_foreach(doc.root, key, v)
			printf("key  %s\n", key);
	} else {
		printf("%s: JSON array of %zu element%s\n", path, json_array_size(doc.root),
		       json_array_size(doc.root) == 1 ? "" : "s");
	}
	mb_json_doc_dispose(&doc);
	return MB_EXIT_OK;
}

int mb_cmd_inspect(int argc, char **argv)
{
	inspect_args a = {0};
	mb_cli_parsed parsed;
	const char *path;
	int with_stats, rc;
	mb_error err;

	if ((rc = mb_cli_parse(&parsed, &a, &inspect_cmd, argc, argv)) != MB_CLI_GO)
		return rc;
	path = parsed.operands[0];
	with_stats = a.stats;
	switch (guess_kind(path)) {
	case KIND_SAFETENSORS: return inspect_safetensors(path, with_stats);
	case KIND_NPY: return inspect_npy(path, with_stats);
	case KIND_JSON: return inspect_json(path);
	default:
		mb_error_set(&err, MB_EINVALID,
			     "%s: unknown file type (expected .safetensors, .npy or .json)", path);
		return mb_cli_fail(&err);
	}
}
