/*
 * artifact.c: checking, reading and comparing per-entry artifacts
 * (artifact.h).
 *
 * Legend: N nodes, E edges of a circuit.
 */
#include <mechbench/artifact.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/str.h>

#define PATH_MAX_LEN 512

/* One error line: with line:col when the artifact came from a file (doc),
 * else "<name>: <field>: <message>". */
static int field_error(const mb_json_doc *doc, const char *name, mb_error *err,
		       const char *field, const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int field_error(const mb_json_doc *doc, const char *name, mb_error *err,
		       const char *field, const char *fmt, ...)
{
	char msg[MB_ERROR_MSG_MAX / 2];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (doc)
		return mb_json_field_error(doc, err, MB_EINVALID, field, "%s", msg);
	return mb_error_set(err, MB_EINVALID, "%s: %s: %s", name ? name : "artifact",
			    field && field[0] ? field : "(root)", msg);
}

typedef struct checker {
	const mb_json_doc *doc;
	const char *name;
	mb_error *err;
} checker;

/* obj[key] as a finite number (in [0, 1] when unit); absent is an error
 * when required, else 1. */
static int get_num(const checker *c, const json_t *obj, const char *at, const char *key,
		   int required, int unit, double *out)
{
	json_t *v = json_object_get(obj, key);
	char path[PATH_MAX_LEN];

	mb_json_path_key(path, sizeof(path), at, key);
	if (!v) {
		if (!required)
			return 1;
		return field_error(c->doc, c->name, c->err, path, "missing (expected a number%s)",
				   unit ? " in [0, 1]" : "");
	}
	if (!json_is_number(v) || !isfinite(json_number_value(v)) ||
	    (unit && !(json_number_value(v) >= 0 && json_number_value(v) <= 1)))
		return field_error(c->doc, c->name, c->err, path, "expected a finite number%s",
				   unit ? " in [0, 1]" : "");
	if (out)
		*out = json_number_value(v);
	return 0;
}

static int get_str(const checker *c, const json_t *obj, const char *at, const char *key,
		   int required, const char **out)
{
	json_t *v = json_object_get(obj, key);
	char path[PATH_MAX_LEN];

	mb_json_path_key(path, sizeof(path), at, key);
	if (!v) {
		if (!required)
			return 1;
		return field_error(c->doc, c->name, c->err, path, "missing (expected a string)");
	}
	if (!json_is_string(v) || json_string_length(v) == 0)
		return field_error(c->doc, c->name, c->err, path, "expected a non-empty string");
	if (out)
		*out = json_string_value(v);
	return 0;
}

static int get_int(const checker *c, const json_t *obj, const char *at, const char *key,
		   int required, json_int_t min, json_int_t max, json_int_t *out)
{
	json_t *v = json_object_get(obj, key);
	char path[PATH_MAX_LEN];

	mb_json_path_key(path, sizeof(path), at, key);
	if (!v) {
		if (!required)
			return 1;
		return field_error(c->doc, c->name, c->err, path, "missing (expected an integer)");
	}
	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
		return field_error(c->doc, c->name, c->err, path,
				   "expected an integer in [%lld, %lld]", (long long)min,
				   (long long)max);
	if (out)
		*out = json_integer_value(v);
	return 0;
}

/* Parses a node id: "a<layer>.<head>" (head >= 0) or "m<layer>" (head -1).
 * Returns 0, or -1 when id has neither form. */
static int parse_node_id(const char *id, long *layer, long *head)
{
	char *end;

	if ((id[0] != 'a' && id[0] != 'm') || id[1] < '0' || id[1] > '9')
		return -1;
	*layer = strtol(id + 1, &end, 10);
	if (*layer < 0 || *layer > 100000)
		return -1;
	if (id[0] == 'm') {
		*head = -1;
		return *end == '\0' ? 0 : -1;
	}
	if (*end != '.' || end[1] < '0' || end[1] > '9')
		return -1;
	*head = strtol(end + 1, &end, 10);
	return *end == '\0' && *head >= 0 && *head <= 100000 ? 0 : -1;
}

static int find_node(const json_t *nodes, const char *id, size_t before)
{
	for (size_t i = 0; i < before; i++)
		if (strcmp(json_string_value(json_object_get(json_array_get(nodes, i), "id")), id) == 0)
			return (int)i;
	return -1;
}

/* Checks element i of a list (nodes, or edges whose ends are nodes), at `at`. */
typedef int (*element_check)(const checker *c, const json_t *nodes, const json_t *list, size_t i,
			     const char *at);

static int check_node(const checker *c, const json_t *nodes, const json_t *list, size_t i,
		      const char *at)
{
	const json_t *n = json_array_get(list, i);
	const char *id = NULL, *kind = NULL;
	json_t *head;
	json_int_t layer = 0, h = -1;
	long pl, ph;
	char path[PATH_MAX_LEN];
	int rc;

	if (!json_is_object(n))
		return field_error(c->doc, c->name, c->err, at, "expected an object");
	if ((rc = get_str(c, n, at, "id", 1, &id)) < 0 ||
	    (rc = get_int(c, n, at, "layer", 1, 0, 100000, &layer)) < 0 ||
	    (rc = get_str(c, n, at, "kind", 1, &kind)) < 0 ||
	    (rc = get_num(c, n, at, "effect", 1, 0, NULL)) < 0 ||
	    (rc = get_num(c, n, at, "inclusion", 0, 1, NULL)) < 0)
		return rc;
	mb_json_path_key(path, sizeof(path), at, "id");
	if (parse_node_id(id, &pl, &ph) < 0)
		return field_error(c->doc, c->name, c->err, path, "'%s' is not a node id "
				   "(\"a<layer>.<head>\" or \"m<layer>\")", id);
	if (find_node(nodes, id, i) >= 0)
		return field_error(c->doc, c->name, c->err, path, "node '%s' appears twice", id);
	mb_json_path_key(path, sizeof(path), at, "kind");
	if (strcmp(kind, ph < 0 ? "mlp" : "head") != 0)
		return field_error(c->doc, c->name, c->err, path, "'%s', but id '%s' names %s",
				   kind, id, ph < 0 ? "an MLP (\"mlp\")" : "a head (\"head\")");
	mb_json_path_key(path, sizeof(path), at, "layer");
	if (layer != pl)
		return field_error(c->doc, c->name, c->err, path, "%lld, but id '%s' names layer %ld",
				   (long long)layer, id, pl);
	head = json_object_get(n, "head");
	if (ph >= 0 || (head && !json_is_null(head))) {
		if ((rc = get_int(c, n, at, "head", 1, ph < 0 ? -1 : 0, 100000, &h)) < 0)
			return rc;
		mb_json_path_key(path, sizeof(path), at, "head");
		if (h != ph && ph < 0)
			return field_error(c->doc, c->name, c->err, path, "%lld, but id '%s' names "
					   "an MLP (head absent, null or -1)", (long long)h, id);
		if (h != ph)
			return field_error(c->doc, c->name, c->err, path,
					   "%lld, but id '%s' names head %ld", (long long)h, id, ph);
	}
	return 0;
}

static int edge_endpoint_ok(const json_t *nodes, const char *id, int from)
{
	return find_node(nodes, id, json_array_size(nodes)) >= 0 ||
	       strcmp(id, from ? "embed" : "logits") == 0;
}

static int check_edge(const checker *c, const json_t *nodes, const json_t *edges, size_t i,
		      const char *at)
{
	const json_t *e = json_array_get(edges, i);
	const char *from = NULL, *to = NULL, *via = NULL;
	char path[PATH_MAX_LEN];
	int rc;

	if (!json_is_object(e))
		return field_error(c->doc, c->name, c->err, at, "expected an object");
	if ((rc = get_str(c, e, at, "from", 1, &from)) < 0 ||
	    (rc = get_str(c, e, at, "to", 1, &to)) < 0 ||
	    (rc = get_str(c, e, at, "via", 1, &via)) < 0 ||
	    (rc = get_num(c, e, at, "effect", 1, 0, NULL)) < 0)
		return rc;
	if (!edge_endpoint_ok(nodes, from, 1)) {
		mb_json_path_key(path, sizeof(path), at, "from");
		return field_error(c->doc, c->name, c->err, path,
				   "'%s' is not a node of this circuit (nor \"embed\")", from);
	}
	if (!edge_endpoint_ok(nodes, to, 0)) {
		mb_json_path_key(path, sizeof(path), at, "to");
		return field_error(c->doc, c->name, c->err, path,
				   "'%s' is not a node of this circuit (nor \"logits\")", to);
	}
	for (size_t j = 0; j < i; j++) {
		const json_t *o = json_array_get(edges, j);
		if (strcmp(json_string_value(json_object_get(o, "from")), from) == 0 &&
		    strcmp(json_string_value(json_object_get(o, "to")), to) == 0 &&
		    strcmp(json_string_value(json_object_get(o, "via")), via) == 0)
			return field_error(c->doc, c->name, c->err, at, "edge %s -> %s via %s "
					   "appears twice (also edges[%zu])", from, to, via, j);
	}
	return 0;
}

/* a[key], an array (of "nodes" or "edges"), each element checked by fn
 * (nodes: the checked node list an element may refer to; NULL: the list
 * itself). */
static int check_list(const checker *c, const json_t *a, const char *at, const char *key,
		      const json_t *nodes, element_check fn)
{
	json_t *list = json_object_get(a, key);
	char path[PATH_MAX_LEN];
	int rc;

	mb_json_path_key(path, sizeof(path), at, key);
	if (!list || !json_is_array(list))
		return field_error(c->doc, c->name, c->err, path, "%s (expected an array of %s)",
				   list ? "not an array" : "missing", key);
	for (size_t i = 0; i < json_array_size(list); i++) {
		char ep[PATH_MAX_LEN];
		mb_json_path_index(ep, sizeof(ep), path, i);
		if ((rc = fn(c, nodes ? nodes : list, list, i, ep)) < 0)
			return rc;
	}
	return 0;
}

static int check_circuit(const checker *c, const json_t *a, const char *at)
{
	json_t *nodes = json_object_get(a, "nodes");
	json_t *crit = json_object_get(a, "criterion"), *stab = json_object_get(a, "stability");
	json_t *truth = json_object_get(a, "truth");
	json_int_t version = 0;
	char path[PATH_MAX_LEN];
	int rc;

	if ((rc = get_int(c, a, at, "version", 1, 1, INT32_MAX, &version)) < 0)
		return rc;
	if (version != MB_ARTIFACT_CIRCUIT_VERSION) {
		mb_json_path_key(path, sizeof(path), at, "version");
		return field_error(c->doc, c->name, c->err, path, "circuit version %lld; this "
				   "build reads version %d", (long long)version,
				   MB_ARTIFACT_CIRCUIT_VERSION);
	}
	if ((rc = get_str(c, a, at, "method", 0, NULL)) < 0 ||
	    (rc = get_str(c, a, at, "ablation", 0, NULL)) < 0)
		return rc;
	if (crit) {
		mb_json_path_key(path, sizeof(path), at, "criterion");
		if (!json_is_object(crit))
			return field_error(c->doc, c->name, c->err, path, "expected an object");
		if ((rc = get_str(c, crit, path, "metric", 1, NULL)) < 0 ||
		    (rc = get_num(c, crit, path, "min", 1, 0, NULL)) < 0)
			return rc;
	}
	if ((rc = check_list(c, a, at, "nodes", NULL, check_node)) < 0 ||
	    (rc = check_list(c, a, at, "edges", nodes, check_edge)) < 0)
		return rc;
	if (stab) {
		double lo = 0, hi = 0;
		mb_json_path_key(path, sizeof(path), at, "stability");
		if (!json_is_object(stab))
			return field_error(c->doc, c->name, c->err, path, "expected an object");
		if ((rc = get_int(c, stab, path, "resamples", 1, 1, INT32_MAX, NULL)) < 0 ||
		    (rc = get_num(c, stab, path, "jaccard_mean", 1, 1, NULL)) < 0 ||
		    (rc = get_num(c, stab, path, "jaccard_lo", 1, 1, &lo)) < 0 ||
		    (rc = get_num(c, stab, path, "jaccard_hi", 1, 1, &hi)) < 0)
			return rc;
		if (lo > hi) {
			char lp[PATH_MAX_LEN];
			mb_json_path_key(lp, sizeof(lp), path, "jaccard_lo");
			return field_error(c->doc, c->name, c->err, lp,
					   "%.17g is above jaccard_hi %.17g", lo, hi);
		}
	}
	if (truth) {
		static const char *const keys[] = {"node_precision", "node_recall", "edge_precision",
						   "edge_recall"};
		mb_json_path_key(path, sizeof(path), at, "truth");
		if (!json_is_object(truth))
			return field_error(c->doc, c->name, c->err, path, "expected an object");
		for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
			if ((rc = get_num(c, truth, path, keys[k], 1, 1, NULL)) < 0)
				return rc;
	}
	return 0;
}

int mb_artifact_check(const mb_json_doc *doc, const char *name, const json_t *a, const char *at,
		      mb_error *err)
{
	checker c = {doc, name, err};
	const char *kind = NULL;
	int rc;

	if (!json_is_object(a))
		return field_error(doc, name, err, at, "an artifact is a JSON object");
	if ((rc = get_str(&c, a, at, "kind", 1, &kind)) < 0)
		return rc;
	if (strcmp(kind, "circuit") == 0)
		return check_circuit(&c, a, at);
	return 0;
}

int mb_artifact_is_circuit(const json_t *a)
{
	const char *kind = json_string_value(json_object_get(a, "kind"));
	return kind && strcmp(kind, "circuit") == 0;
}

/* --- the first difference ------------------------------------------------------------- */

int mb_artifact_first_diff(char *buf, size_t cap, const json_t *a, const json_t *b,
			   const char *at)
{
	buf[0] = '\0';
	if (a == b)
		return 0;
	if (!a || !b || json_typeof(a) != json_typeof(b)) {
		snprintf(buf, cap, "%s", at);
		return 1;
	}
	if (json_is_object(a)) {
		const char *key;
		json_t *va;
		/* keys in a's order, then keys only b has */
		json_object_foreach((json_t *)a, key, va) {
			char path[PATH_MAX_LEN];
			mb_json_path_key(path, sizeof(path), at, key);
			if (mb_artifact_first_diff(buf, cap, va, json_object_get(b, key), path))
				return 1;
		}
		json_object_foreach((json_t *)b, key, va) {
			if (!json_object_get(a, key)) {
				mb_json_path_key(buf, cap, at, key);
				return 1;
			}
		}
		return 0;
	}
	if (json_is_array(a)) {
		size_t na = json_array_size(a), nb = json_array_size(b);
		for (size_t i = 0; i < na && i < nb; i++) {
			char path[PATH_MAX_LEN];
			mb_json_path_index(path, sizeof(path), at, i);
			if (mb_artifact_first_diff(buf, cap, json_array_get(a, i), json_array_get(b, i),
						   path))
				return 1;
		}
		if (na != nb) {
			mb_json_path_index(buf, cap, at, na < nb ? na : nb);
			return 1;
		}
		return 0;
	}
	if (json_is_real(a) ? memcmp(&(double){json_real_value(a)}, &(double){json_real_value(b)},
				     sizeof(double)) != 0
			    : !json_equal((json_t *)a, (json_t *)b)) {
		snprintf(buf, cap, "%s", at);
		return 1;
	}
	return 0;
}

/* --- reading a circuit ---------------------------------------------------------------- */

static double num_or_nan(const json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	return json_is_number(v) ? json_number_value(v) : NAN;
}

int mb_artifact_circuit_read(mb_artifact_circuit *out, const json_t *a, mb_error *err)
{
	json_t *nodes, *edges, *crit, *stab, *truth;
	int error;

	memset(out, 0, sizeof(*out));
	if ((error = mb_artifact_check(NULL, "artifact", a, "artifact", err)) < 0)
		return error;
	if (!mb_artifact_is_circuit(a))
		return mb_error_set(err, MB_EINVALID, "artifact: kind '%s', expected \"circuit\"",
				    json_string_value(json_object_get(a, "kind")));
	nodes = json_object_get(a, "nodes");
	edges = json_object_get(a, "edges");
	crit = json_object_get(a, "criterion");
	stab = json_object_get(a, "stability");
	truth = json_object_get(a, "truth");
	out->method = json_string_value(json_object_get(a, "method"));
	out->ablation = json_string_value(json_object_get(a, "ablation"));
	out->criterion_metric = json_string_value(json_object_get(crit, "metric"));
	out->criterion_min = num_or_nan(crit, "min");
	out->nodes = calloc(json_array_size(nodes) + 1, sizeof(*out->nodes));
	out->edges = calloc(json_array_size(edges) + 1, sizeof(*out->edges));
	if (!out->nodes || !out->edges) {
		mb_artifact_circuit_dispose(out);
		return mb_error_oom(err, "circuit", json_array_size(nodes) * sizeof(*out->nodes));
	}
	for (size_t i = 0; i < json_array_size(nodes); i++) {
		json_t *n = json_array_get(nodes, i);
		long layer = 0, head = 0;
		mb_artifact_node *o = &out->nodes[i];
		o->id = json_string_value(json_object_get(n, "id"));
		(void)parse_node_id(o->id, &layer, &head); /* checked above */
		o->layer = (int)layer;
		o->head = (int)head;
		o->effect = num_or_nan(n, "effect");
		o->inclusion = num_or_nan(n, "inclusion");
	}
	out->n_nodes = json_array_size(nodes);
	for (size_t i = 0; i < json_array_size(edges); i++) {
		json_t *e = json_array_get(edges, i);
		out->edges[i] = (mb_artifact_edge){json_string_value(json_object_get(e, "from")),
						   json_string_value(json_object_get(e, "to")),
						   json_string_value(json_object_get(e, "via")),
						   num_or_nan(e, "effect")};
	}
	out->n_edges = json_array_size(edges);
	if (stab) {
		out->stability.present = 1;
		out->stability.resamples = json_integer_value(json_object_get(stab, "resamples"));
		out->stability.mean = num_or_nan(stab, "jaccard_mean");
		out->stability.lo = num_or_nan(stab, "jaccard_lo");
		out->stability.hi = num_or_nan(stab, "jaccard_hi");
	}
	if (truth) {
		out->has_truth = 1;
		out->node_precision = num_or_nan(truth, "node_precision");
		out->node_recall = num_or_nan(truth, "node_recall");
		out->edge_precision = num_or_nan(truth, "edge_precision");
		out->edge_recall = num_or_nan(truth, "edge_recall");
	}
	return 0;
}

void mb_artifact_circuit_dispose(mb_artifact_circuit *c)
{
	if (!c)
		return;
	free(c->nodes);
	free(c->edges);
	memset(c, 0, sizeof(*c));
}

/* --- comparing ------------------------------------------------------------------------ */

const char *mb_artifact_change_name(mb_artifact_change c)
{
	switch (c) {
	case MB_ARTIFACT_IDENTICAL: return "IDENTICAL";
	case MB_ARTIFACT_MOVED: return "MOVED";
	case MB_ARTIFACT_CHANGED: return "CHANGED";
	case MB_ARTIFACT_NEW: return "NEW";
	case MB_ARTIFACT_GONE: return "GONE";
	}
	return "UNKNOWN";
}

const char *mb_artifact_noise_name(mb_artifact_noise n)
{
	switch (n) {
	case MB_ARTIFACT_NOISE_NONE: return "-";
	case MB_ARTIFACT_NOISE_WITHIN: return "within resampling noise";
	case MB_ARTIFACT_NOISE_BEYOND: return "beyond resampling noise";
	case MB_ARTIFACT_NOISE_UNKNOWN: return "noise unknown";
	}
	return "unknown";
}

static long circuit_node(const mb_artifact_circuit *c, const char *id)
{
	for (size_t i = 0; i < c->n_nodes; i++)
		if (strcmp(c->nodes[i].id, id) == 0)
			return (long)i;
	return -1;
}

static long circuit_edge(const mb_artifact_circuit *c, const mb_artifact_edge *e)
{
	for (size_t i = 0; i < c->n_edges; i++)
		if (strcmp(c->edges[i].from, e->from) == 0 && strcmp(c->edges[i].to, e->to) == 0 &&
		    strcmp(c->edges[i].via, e->via) == 0)
			return (long)i;
	return -1;
}

/* The nodes of `from` that `other` lacks, into *out (*n of them). */
static int nodes_missing(mb_artifact_node_change **out, size_t *n, const mb_artifact_circuit *from,
			 const mb_artifact_circuit *other, mb_error *err)
{
	*out = calloc(from->n_nodes + 1, sizeof(**out));
	*n = 0;
	if (!*out)
		return mb_error_oom(err, "circuit changes", from->n_nodes * sizeof(**out));
	for (size_t i = 0; i < from->n_nodes; i++) {
		const mb_artifact_node *v = &from->nodes[i];
		if (circuit_node(other, v->id) >= 0)
			continue;
		if (!((*out)[*n].id = mb_str_dup(v->id)))
			return mb_error_oom(err, "node id", strlen(v->id));
		(*out)[*n].effect = v->effect;
		(*out)[*n].inclusion = v->inclusion;
		(*n)++;
	}
	return 0;
}

static int edges_missing(mb_artifact_edge_change **out, size_t *n, const mb_artifact_circuit *from,
			 const mb_artifact_circuit *other, mb_error *err)
{
	*out = calloc(from->n_edges + 1, sizeof(**out));
	*n = 0;
	if (!*out)
		return mb_error_oom(err, "circuit changes", from->n_edges * sizeof(**out));
	for (size_t i = 0; i < from->n_edges; i++) {
		const mb_artifact_edge *e = &from->edges[i];
		mb_artifact_edge_change *o = &(*out)[*n];
		if (circuit_edge(other, e) >= 0)
			continue;
		o->from = mb_str_dup(e->from);
		o->to = mb_str_dup(e->to);
		o->via = mb_str_dup(e->via);
		o->effect = e->effect;
		(*n)++;
		if (!o->from || !o->to || !o->via)
			return mb_error_oom(err, "edge ids", 0);
	}
	return 0;
}

/* |A n B| / |A u B| from |A| and the counts only in A and only in B. */
static double jaccard(size_t n_a, size_t n_only_a, size_t n_only_b)
{
	size_t both = n_a - n_only_a, uni = n_a + n_only_b;
	return uni ? (double)both / (double)uni : 1.0;
}

static int diff_circuits(mb_artifact_diff *d, const json_t *base, const json_t *cand,
			 mb_error *err)
{
	mb_artifact_circuit b, c;
	int error;

	memset(&c, 0, sizeof(c));
	if ((error = mb_artifact_circuit_read(&b, base, err)) < 0)
		return error;
	if ((error = mb_artifact_circuit_read(&c, cand, err)) < 0)
		goto cleanup;
	d->circuits = 1;
	d->base_nodes = b.n_nodes;
	d->cand_nodes = c.n_nodes;
	d->base_edges = b.n_edges;
	d->cand_edges = c.n_edges;
	d->base_stability = b.stability;
	d->cand_stability = c.stability;
	if ((error = nodes_missing(&d->nodes_removed, &d->n_nodes_removed, &b, &c, err)) < 0 ||
	    (error = nodes_missing(&d->nodes_added, &d->n_nodes_added, &c, &b, err)) < 0 ||
	    (error = edges_missing(&d->edges_removed, &d->n_edges_removed, &b, &c, err)) < 0 ||
	    (error = edges_missing(&d->edges_added, &d->n_edges_added, &c, &b, err)) < 0)
		goto cleanup;
	d->node_jaccard = jaccard(b.n_nodes, d->n_nodes_removed, d->n_nodes_added);
	d->edge_jaccard = jaccard(b.n_edges, d->n_edges_removed, d->n_edges_added);
	if (d->n_nodes_added || d->n_nodes_removed || d->n_edges_added || d->n_edges_removed) {
		d->change = MB_ARTIFACT_CHANGED;
		/* The lower of the reported bounds: call a change noise when either
		 * run's own resampling produces circuits that far apart. */
		if (b.stability.present)
			d->noise_bound = b.stability.lo;
		if (c.stability.present && !(d->noise_bound <= c.stability.lo))
			d->noise_bound = c.stability.lo;
		d->noise = isnan(d->noise_bound) ? MB_ARTIFACT_NOISE_UNKNOWN
			   : d->node_jaccard >= d->noise_bound ? MB_ARTIFACT_NOISE_WITHIN
							       : MB_ARTIFACT_NOISE_BEYOND;
	} else {
		d->change = MB_ARTIFACT_MOVED;
	}
cleanup:
	mb_artifact_circuit_dispose(&b);
	mb_artifact_circuit_dispose(&c);
	return error;
}

int mb_artifact_diff_make(mb_artifact_diff *out, const char *entry, const json_t *base,
			  const json_t *cand, mb_error *err)
{
	const char *kind;
	int error = 0;

	MB_ASSERT(base || cand);
	memset(out, 0, sizeof(*out));
	out->node_jaccard = out->edge_jaccard = out->noise_bound = NAN;
	kind = json_string_value(json_object_get(cand ? cand : base, "kind"));
	out->entry = mb_str_dup(entry);
	out->kind = mb_str_dup(kind ? kind : "");
	if (!out->entry || !out->kind) {
		error = mb_error_oom(err, "artifact diff", 0);
		goto cleanup;
	}
	if (!mb_artifact_first_diff(out->first_diff, sizeof(out->first_diff), base, cand,
				    "artifact")) {
		out->change = MB_ARTIFACT_IDENTICAL;
		if (mb_artifact_is_circuit(cand) &&
		    (error = diff_circuits(out, base, cand, err)) == 0)
			out->change = MB_ARTIFACT_IDENTICAL;
	} else if (!base) {
		out->change = MB_ARTIFACT_NEW;
	} else if (!cand) {
		out->change = MB_ARTIFACT_GONE;
	} else if (mb_artifact_is_circuit(base) && mb_artifact_is_circuit(cand)) {
		error = diff_circuits(out, base, cand, err);
	} else {
		out->change = MB_ARTIFACT_CHANGED;
	}
cleanup:
	if (error < 0) {
		mb_error_prefix(err, "entry %s", entry);
		mb_artifact_diff_dispose(out);
	}
	return error;
}

void mb_artifact_diff_dispose(mb_artifact_diff *d)
{
	if (!d)
		return;
	free(d->entry);
	free(d->kind);
	for (size_t i = 0; d->nodes_added && i < d->n_nodes_added; i++)
		free(d->nodes_added[i].id);
	for (size_t i = 0; d->nodes_removed && i < d->n_nodes_removed; i++)
		free(d->nodes_removed[i].id);
	free(d->nodes_added);
	free(d->nodes_removed);
	for (size_t i = 0; d->edges_added && i < d->n_edges_added; i++) {
		free(d->edges_added[i].from);
		free(d->edges_added[i].to);
		free(d->edges_added[i].via);
	}
	for (size_t i = 0; d->edges_removed && i < d->n_edges_removed; i++) {
		free(d->edges_removed[i].from);
		free(d->edges_removed[i].to);
		free(d->edges_removed[i].via);
	}
	free(d->edges_added);
	free(d->edges_removed);
	memset(d, 0, sizeof(*d));
}
