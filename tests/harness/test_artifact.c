/* Per-entry artifacts (artifact.h): the circuit shape is checked field by
 * field with one line per bad input, read back, and two circuits compare into
 * added and removed nodes and edges, a Jaccard computed here by hand, and a
 * noise verdict from the stability interval. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/artifact.h>

/* A circuit of 4 heads and an MLP in layers 7-10, with every field. */
#define CIRCUIT                                                                                  \
	"{\"kind\": \"circuit\", \"version\": 1, \"method\": \"acdc\", \"ablation\": \"mean-abc\","  \
	" \"criterion\": {\"metric\": \"faithfulness\", \"min\": 0.8},"                             \
	" \"nodes\": ["                                                                            \
	"  {\"id\": \"a7.3\", \"layer\": 7, \"head\": 3, \"kind\": \"head\", \"effect\": 0.2,"      \
	"   \"inclusion\": 0.6},"                                                                  \
	"  {\"id\": \"a9.6\", \"layer\": 9, \"head\": 6, \"kind\": \"head\", \"effect\": 1.5,"      \
	"   \"inclusion\": 1.0},"                                                                  \
	"  {\"id\": \"a9.9\", \"layer\": 9, \"head\": 9, \"kind\": \"head\", \"effect\": 1.25,"     \
	"   \"inclusion\": 0.98},"                                                                 \
	"  {\"id\": \"a10.7\", \"layer\": 10, \"head\": 7, \"kind\": \"head\", \"effect\": -0.5,"   \
	"   \"inclusion\": 0.7},"                                                                  \
	"  {\"id\": \"m8\", \"layer\": 8, \"kind\": \"mlp\", \"effect\": 0.1}],"                     \
	" \"edges\": ["                                                                            \
	"  {\"from\": \"a7.3\", \"to\": \"a9.6\", \"via\": \"q\", \"effect\": 0.3},"               \
	"  {\"from\": \"a7.3\", \"to\": \"a9.9\", \"via\": \"q\", \"effect\": 0.25},"              \
	"  {\"from\": \"embed\", \"to\": \"a7.3\", \"via\": \"resid\", \"effect\": 0.1},"          \
	"  {\"from\": \"a9.6\", \"to\": \"logits\", \"via\": \"resid\", \"effect\": 1.5}],"         \
	" \"stability\": {\"resamples\": 50, \"jaccard_mean\": 0.8, \"jaccard_lo\": 0.6,"         \
	"  \"jaccard_hi\": 0.95},"                                                                 \
	" \"truth\": {\"node_precision\": 1, \"node_recall\": 0.75, \"edge_precision\": 0.5,"      \
	"  \"edge_recall\": 0.5}}"

static json_t *parse(const char *text)
{
	json_error_t jerr;
	json_t *j = json_loads(text, JSON_DECODE_ANY, &jerr);
	cr_assert(j != NULL, "test JSON: %d:%d: %s", jerr.line, jerr.column, jerr.text);
	return j;
}

/* The circuit with the value at path (dots and [i]) replaced by v (NULL:
 * removed). */
static json_t *edited(const char *path, json_t *v)
{
	json_t *root = parse(CIRCUIT), *at = root;
	char buf[256], *tok, *next;
	char last[64] = "";
	json_t *parent = NULL;
	long last_index = -1;

	snprintf(buf, sizeof(buf), "%s", path);
	for (tok = buf; tok; tok = next) {
		char *br = strchr(tok, '[');
		next = strchr(tok, '.');
		if (next)
			*next++ = '\0';
		if (br)
			*br = '\0';
		parent = at;
		snprintf(last, sizeof(last), "%s", tok);
		last_index = -1;
		at = json_object_get(at, tok);
		if (br) {
			parent = at;
			last_index = strtol(br + 1, NULL, 10);
			at = json_array_get(at, (size_t)last_index);
		}
	}
	cr_assert(parent != NULL, "path %s", path);
	if (last_index >= 0) {
		if (v)
			json_array_set_new(parent, (size_t)last_index, v);
		else
			json_array_remove(parent, (size_t)last_index);
	} else if (v) {
		json_object_set_new(parent, last, v);
	} else {
		json_object_del(parent, last);
	}
	return root;
}

Test(artifact, a_full_circuit_passes_and_reads_back)
{
	json_t *a = parse(CIRCUIT);
	mb_artifact_circuit c;
	mb_error err;

	cr_assert_eq(mb_artifact_check(NULL, "t", a, "artifact", &err), 0, "%s", err.msg);
	cr_assert_eq(mb_artifact_circuit_read(&c, a, &err), 0, "%s", err.msg);
	cr_expect_str_eq(c.method, "acdc");
	cr_expect_str_eq(c.ablation, "mean-abc");
	cr_expect_str_eq(c.criterion_metric, "faithfulness");
	cr_expect_eq(c.criterion_min, 0.8);
	cr_assert_eq(c.n_nodes, 5);
	cr_expect_str_eq(c.nodes[3].id, "a10.7");
	cr_expect_eq(c.nodes[3].layer, 10);
	cr_expect_eq(c.nodes[3].head, 7);
	cr_expect_eq(c.nodes[3].effect, -0.5);
	cr_expect_eq(c.nodes[4].head, -1, "an MLP has no head");
	cr_expect(isnan(c.nodes[4].inclusion), "inclusion not reported");
	cr_assert_eq(c.n_edges, 4);
	cr_expect_str_eq(c.edges[2].from, "embed");
	cr_expect_str_eq(c.edges[0].via, "q");
	cr_expect(c.stability.present);
	cr_expect_eq(c.stability.resamples, 50);
	cr_expect_eq(c.stability.lo, 0.6);
	cr_expect(c.has_truth);
	cr_expect_eq(c.node_recall, 0.75);
	mb_artifact_circuit_dispose(&c);
	json_decref(a);
	/* another kind is carried as it is, whatever else it holds */
	a = parse("{\"kind\": \"probe-set\", \"anything\": [1, 2]}");
	cr_expect_eq(mb_artifact_check(NULL, "t", a, "artifact", &err), 0, "%s", err.msg);
	cr_expect_eq(mb_artifact_circuit_read(&c, a, &err), MB_EINVALID);
	json_decref(a);
}

typedef struct bad_case {
	const char *path;  /* field replaced */
	const char *value; /* its new JSON value, or NULL: removed */
	const char *error; /* what the one line must say */
} bad_case;

static const bad_case bad_cases[] = {
	{"kind", NULL, "artifact.kind: missing (expected a string)"},
	{"kind", "\"\"", "artifact.kind: expected a non-empty string"},
	{"version", "2", "artifact.version: circuit version 2; this build reads version 1"},
	{"nodes", NULL, "artifact.nodes: missing (expected an array of nodes)"},
	{"nodes", "{}", "artifact.nodes: not an array"},
	{"nodes[1]", "7", "artifact.nodes[1]: expected an object"},
	{"nodes[1].id", "\"h9.6\"", "artifact.nodes[1].id: 'h9.6' is not a node id"},
	{"nodes[1].id", "\"a9.\"", "artifact.nodes[1].id: 'a9.' is not a node id"},
	{"nodes[1].id", "\"a7.3\"", "artifact.nodes[1].id: node 'a7.3' appears twice"},
	{"nodes[1].layer", "8", "artifact.nodes[1].layer: 8, but id 'a9.6' names layer 9"},
	{"nodes[1].head", "5", "artifact.nodes[1].head: 5, but id 'a9.6' names head 6"},
	{"nodes[1].head", NULL, "artifact.nodes[1].head: missing (expected an integer)"},
	{"nodes[1].kind", "\"mlp\"", "artifact.nodes[1].kind: 'mlp', but id 'a9.6' names a head"},
	{"nodes[4].head", "2", "artifact.nodes[4].head: 2, but id 'm8' names an MLP"},
	{"nodes[1].effect", "\"big\"", "artifact.nodes[1].effect: expected a finite number"},
	{"nodes[1].inclusion", "1.5", "artifact.nodes[1].inclusion: expected a finite number in "
				       "[0, 1]"},
	{"edges", NULL, "artifact.edges: missing (expected an array of edges)"},
	{"edges[0].to", "\"a9.7\"", "artifact.edges[0].to: 'a9.7' is not a node of this circuit "
				    "(nor \"logits\")"},
	{"edges[0].from", "\"logits\"", "artifact.edges[0].from: 'logits' is not a node of this "
					"circuit (nor \"embed\")"},
	{"edges[1].to", "\"a9.6\"", "artifact.edges[1]: edge a7.3 -> a9.6 via q appears twice "
				    "(also edges[0])"},
	{"edges[0].via", NULL, "artifact.edges[0].via: missing (expected a string)"},
	{"criterion.min", "\"high\"", "artifact.criterion.min: expected a finite number"},
	{"stability.resamples", "0", "artifact.stability.resamples: expected an integer in [1, "},
	{"stability.jaccard_lo", "0.99", "artifact.stability.jaccard_lo: 0.98999999999999999 is "
					 "above jaccard_hi 0.94999999999999996"},
	{"stability.jaccard_mean", NULL, "artifact.stability.jaccard_mean: missing"},
	{"truth.edge_recall", "-0.1", "artifact.truth.edge_recall: expected a finite number in "
				      "[0, 1]"},
	{"truth", "[]", "artifact.truth: expected an object"},
};

Test(artifact, every_malformed_field_is_one_line_naming_it)
{
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const bad_case *bc = &bad_cases[i];
		json_t *a = edited(bc->path, bc->value ? parse(bc->value) : NULL);
		mb_error err;
		int rc = mb_artifact_check(NULL, "db.sqlite: run 3 entry ioi", a, "artifact", &err);
		cr_expect_eq(rc, MB_EINVALID, "case %zu (%s): rc %d", i, bc->path, rc);
		cr_expect(strstr(err.msg, bc->error) != NULL, "case %zu (%s):\n  got  %s\n  want %s",
			  i, bc->path, err.msg, bc->error);
		cr_expect(strncmp(err.msg, "db.sqlite: run 3 entry ioi: ", 28) == 0, "%s", err.msg);
		cr_expect(strchr(err.msg, '\n') == NULL);
		json_decref(a);
	}
	{
		mb_error err;
		json_t *a = parse("[1]");
		cr_expect_eq(mb_artifact_check(NULL, "x", a, "artifact", &err), MB_EINVALID);
		cr_expect_str_eq(err.msg, "x: artifact: an artifact is a JSON object");
		json_decref(a);
	}
}

Test(artifact, errors_in_a_file_carry_its_line_and_column)
{
	const char *text = "{\"entries\": [{\"artifact\": {\"kind\": \"circuit\", \"version\": 1,\n"
			   "  \"nodes\": [{\"id\": \"a1.2\", \"layer\": 1, \"head\": 2, \"kind\": "
			   "\"head\",\n  \"effect\": 1, \"inclusion\": 2}], \"edges\": []}}]}";
	mb_json_doc doc;
	mb_error err;

	cr_assert_eq(mb_json_doc_parse(&doc, text, strlen(text), "REF:b.json", &err), 0);
	cr_expect_eq(mb_artifact_check(&doc, NULL,
				       json_object_get(json_array_get(json_object_get(doc.root,
										      "entries"),
								      0),
						       "artifact"),
				       "entries[0].artifact", &err),
		     MB_EINVALID);
	cr_expect_str_eq(err.msg, "REF:b.json:3:16: entries[0].artifact.nodes[0].inclusion: "
				  "expected a finite number in [0, 1]");
	mb_json_doc_dispose(&doc);
}

Test(artifact, the_first_difference_is_named_down_to_one_ulp)
{
	json_t *a = parse(CIRCUIT), *b = parse(CIRCUIT);
	char where[256];

	cr_expect_eq(mb_artifact_first_diff(where, sizeof(where), a, b, "artifact"), 0);
	cr_expect_str_eq(where, "");
	json_object_set_new(json_array_get(json_object_get(b, "nodes"), 2), "effect",
			    json_real(nextafter(1.25, 2.0)));
	cr_expect_eq(mb_artifact_first_diff(where, sizeof(where), a, b, "artifact"), 1);
	cr_expect_str_eq(where, "artifact.nodes[2].effect");
	json_decref(b);
	b = parse(CIRCUIT);
	json_array_remove(json_object_get(b, "edges"), 3);
	cr_expect_eq(mb_artifact_first_diff(where, sizeof(where), a, b, "artifact"), 1);
	cr_expect_str_eq(where, "artifact.edges[3]");
	json_object_set_new(b, "extra", json_true());
	json_array_append_new(json_object_get(b, "edges"),
			      json_deep_copy(json_array_get(json_object_get(a, "edges"), 3)));
	cr_expect_eq(mb_artifact_first_diff(where, sizeof(where), a, b, "artifact"), 1);
	cr_expect_str_eq(where, "artifact.extra");
	cr_expect_eq(mb_artifact_first_diff(where, sizeof(where), a, NULL, "artifact"), 1);
	cr_expect_str_eq(where, "artifact");
	json_decref(a);
	json_decref(b);
}

/* cand: the circuit with a9.9 replaced by a10.2 (and its edge moved). */
static json_t *changed_circuit(void)
{
	json_t *c = parse(CIRCUIT);
	json_t *nodes = json_object_get(c, "nodes"), *edges = json_object_get(c, "edges");
	json_array_set_new(nodes, 2, parse("{\"id\": \"a10.2\", \"layer\": 10, \"head\": 2, "
					   "\"kind\": \"head\", \"effect\": 0.4, \"inclusion\": "
					   "0.55}"));
	json_array_set_new(edges, 1, parse("{\"from\": \"a7.3\", \"to\": \"a10.2\", \"via\": "
					   "\"k\", \"effect\": 0.05}"));
	return c;
}

Test(artifact, a_changed_circuit_lists_its_changes_with_the_noise_verdict)
{
	json_t *b = parse(CIRCUIT), *c = changed_circuit();
	mb_artifact_diff d;
	mb_error err;

	cr_assert_eq(mb_artifact_diff_make(&d, "ioi", b, c, &err), 0, "%s", err.msg);
	cr_expect_eq(d.change, MB_ARTIFACT_CHANGED);
	cr_expect_str_eq(d.kind, "circuit");
	cr_expect_str_eq(d.first_diff, "artifact.nodes[2].id");
	cr_assert_eq(d.n_nodes_removed, 1);
	cr_expect_str_eq(d.nodes_removed[0].id, "a9.9");
	cr_expect_eq(d.nodes_removed[0].inclusion, 0.98, "the baseline's inclusion");
	cr_expect_eq(d.nodes_removed[0].effect, 1.25);
	cr_assert_eq(d.n_nodes_added, 1);
	cr_expect_str_eq(d.nodes_added[0].id, "a10.2");
	cr_expect_eq(d.nodes_added[0].inclusion, 0.55, "the candidate's inclusion");
	cr_assert_eq(d.n_edges_removed, 1);
	cr_expect_str_eq(d.edges_removed[0].to, "a9.9");
	cr_assert_eq(d.n_edges_added, 1);
	cr_expect_str_eq(d.edges_added[0].via, "k");
	/* 4 of 6 distinct nodes are shared; 3 of 5 distinct edges */
	cr_expect_eq(d.node_jaccard, 4.0 / 6.0);
	cr_expect_eq(d.edge_jaccard, 3.0 / 5.0);
	cr_expect_eq(d.noise_bound, 0.6);
	cr_expect_eq(d.noise, MB_ARTIFACT_NOISE_WITHIN, "0.667 >= 0.6: resampling does this");
	cr_expect_eq(d.base_nodes, 5);
	cr_expect_eq(d.cand_edges, 4);
	mb_artifact_diff_dispose(&d);

	/* a narrower stability band in the candidate: the lower bound decides */
	json_object_set_new(json_object_get(c, "stability"), "jaccard_lo", json_real(0.5));
	cr_assert_eq(mb_artifact_diff_make(&d, "ioi", b, c, &err), 0, "%s", err.msg);
	cr_expect_eq(d.noise_bound, 0.5);
	cr_expect_eq(d.noise, MB_ARTIFACT_NOISE_WITHIN);
	mb_artifact_diff_dispose(&d);
	/* stable circuits: the same change is beyond resampling noise */
	json_object_set_new(json_object_get(b, "stability"), "jaccard_lo", json_real(0.9));
	json_object_set_new(json_object_get(c, "stability"), "jaccard_lo", json_real(0.9));
	cr_assert_eq(mb_artifact_diff_make(&d, "ioi", b, c, &err), 0, "%s", err.msg);
	cr_expect_eq(d.noise, MB_ARTIFACT_NOISE_BEYOND);
	cr_expect_str_eq(mb_artifact_noise_name(d.noise), "beyond resampling noise");
	mb_artifact_diff_dispose(&d);
	/* no stability anywhere: unknown */
	json_object_del(b, "stability");
	json_object_del(c, "stability");
	cr_assert_eq(mb_artifact_diff_make(&d, "ioi", b, c, &err), 0, "%s", err.msg);
	cr_expect_eq(d.noise, MB_ARTIFACT_NOISE_UNKNOWN);
	cr_expect(isnan(d.noise_bound));
	mb_artifact_diff_dispose(&d);
	json_decref(b);
	json_decref(c);
}

Test(artifact, same_sets_are_moved_or_identical_and_missing_ones_new_or_gone)
{
	json_t *b = parse(CIRCUIT), *c = parse(CIRCUIT), *other = parse("{\"kind\": \"x\"}");
	mb_artifact_diff d;
	mb_error err;

	cr_assert_eq(mb_artifact_diff_make(&d, "e", b, c, &err), 0, "%s", err.msg);
	cr_expect_eq(d.change, MB_ARTIFACT_IDENTICAL);
	cr_expect_eq(d.node_jaccard, 1.0);
	cr_expect_eq(d.noise, MB_ARTIFACT_NOISE_NONE);
	mb_artifact_diff_dispose(&d);
	json_object_set_new(json_array_get(json_object_get(c, "edges"), 0), "effect",
			    json_real(0.31));
	cr_assert_eq(mb_artifact_diff_make(&d, "e", b, c, &err), 0, "%s", err.msg);
	cr_expect_eq(d.change, MB_ARTIFACT_MOVED);
	cr_expect_str_eq(d.first_diff, "artifact.edges[0].effect");
	cr_expect_eq(d.n_nodes_added + d.n_nodes_removed + d.n_edges_added + d.n_edges_removed, 0);
	mb_artifact_diff_dispose(&d);
	cr_assert_eq(mb_artifact_diff_make(&d, "e", NULL, c, &err), 0, "%s", err.msg);
	cr_expect_eq(d.change, MB_ARTIFACT_NEW);
	mb_artifact_diff_dispose(&d);
	cr_assert_eq(mb_artifact_diff_make(&d, "e", b, NULL, &err), 0, "%s", err.msg);
	cr_expect_eq(d.change, MB_ARTIFACT_GONE);
	cr_expect_str_eq(d.kind, "circuit");
	mb_artifact_diff_dispose(&d);
	/* a circuit against another kind: CHANGED, no node lists */
	cr_assert_eq(mb_artifact_diff_make(&d, "e", b, other, &err), 0, "%s", err.msg);
	cr_expect_eq(d.change, MB_ARTIFACT_CHANGED);
	cr_expect_eq(d.circuits, 0);
	cr_expect_str_eq(d.first_diff, "artifact.kind");
	mb_artifact_diff_dispose(&d);
	json_decref(b);
	json_decref(c);
	json_decref(other);
}
