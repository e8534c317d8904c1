/*
 * artifact.h: per-entry artifacts. A task's optional prepare hook (task.h)
 * hands the runner one JSON object per entry, computed once from all of the
 * entry's items (a circuit discovered on the discovery split); the runner
 * keeps it on the entry's result (runner.h, mb_entry_result.artifact), the
 * store keeps it (store.h, table artifacts), baseline files carry it
 * (baseline.h), the gate compares it (gate.h) and the reports draw it.
 *
 * Every artifact is an object with a "kind" (a non-empty string). Kind
 * "circuit", version 1, has this shape (fields beyond these are kept and
 * carried as they are):
 *
 *   {"kind": "circuit", "version": 1,
 *    "method": "...",                         how it was found (optional)
 *    "ablation": "mean-abc|resample|zero",    what "outside the circuit" means (optional)
 *    "criterion": {"metric": "faithfulness", "min": 0.8},   (optional)
 *    "nodes": [{"id": "a9.6", "layer": 9, "head": 6, "kind": "head",
 *               "effect": x, "inclusion": f}],
 *    "edges": [{"from": "a7.3", "to": "a9.6", "via": "q|k|v|resid", "effect": x}],
 *    "stability": {"resamples": B, "jaccard_mean": m, "jaccard_lo": l,
 *                  "jaccard_hi": h},                        (optional)
 *    "truth": {"node_precision": p, "node_recall": r, "edge_precision": p2,
 *              "edge_recall": r2}}                          (optional)
 *
 * Node ids are "a<layer>.<head>" for attention heads and "m<layer>" for MLPs
 * (an MLP node's "head" is absent, null or -1), and agree with "layer",
 * "head" and "kind". Ids are unique; an edge (from, to, via) appears once and
 * joins two nodes of the list, or comes from "embed" or goes to "logits".
 * "inclusion" (optional) is the fraction of the bootstrap resamples of the
 * discovery split whose circuit holds the node; "stability" summarises the
 * Jaccard similarity of the resampled circuits' node sets to the circuit
 * (mean and CI over B resamples). Numbers are finite; fractions in [0, 1].
 *
 * Other kinds are stored and carried unchanged; the gate says only whether
 * they are bitwise the same.
 */
#ifndef MECHBENCH_ARTIFACT_H
#define MECHBENCH_ARTIFACT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include <mechbench/error.h>
#include <mechbench/json.h>

#define MB_ARTIFACT_CIRCUIT_VERSION 1

/* Checks artifact a, which sits at field path `at` ("entries[0].artifact").
 * doc: the file a was read from (errors then carry line:col), or NULL (a
 * database, a task), when errors are prefixed with `name`. Returns 0 or
 * MB_EINVALID with one line naming the field ("<name>: artifact.nodes[2].
 * inclusion: expected a number in [0, 1]"). */
int mb_artifact_check(const mb_json_doc *doc, const char *name, const json_t *a, const char *at,
		      mb_error *err);

/* The first place where a and b differ, as a field path under `at` into buf
 * ("artifact.nodes[2].effect"). Returns 1 when they differ (a NULL and a
 * non-NULL value differ at `at`), else 0 with buf "". Numbers compare by
 * value and type, so a difference of one ulp is found. */
int mb_artifact_first_diff(char *buf, size_t cap, const json_t *a, const json_t *b,
			   const char *at);

/* --- circuits ------------------------------------------------------------------------- */

typedef struct mb_artifact_node {
	const char *id;   /* borrowed from the artifact */
	int layer;
	int head;         /* -1 for an MLP */
	double effect;
	double inclusion; /* NaN when absent */
} mb_artifact_node;

typedef struct mb_artifact_edge {
	const char *from, *to, *via; /* borrowed */
	double effect;
} mb_artifact_edge;

typedef struct mb_artifact_stability {
	int present;
	int64_t resamples;
	double mean, lo, hi; /* Jaccard of resampled circuits to the circuit */
} mb_artifact_stability;

typedef struct mb_artifact_circuit {
	const char *method, *ablation;    /* borrowed; NULL when absent */
	const char *criterion_metric;     /* borrowed; NULL when absent */
	double criterion_min;             /* NaN when absent */
	mb_artifact_node *nodes;          /* (n_nodes) owned array, in artifact order */
	size_t n_nodes;
	mb_artifact_edge *edges;          /* (n_edges) owned array */
	size_t n_edges;
	mb_artifact_stability stability;
	int has_truth;
	double node_precision, node_recall, edge_precision, edge_recall;
} mb_artifact_circuit;

/* 1 when a is an object whose "kind" is "circuit". */
int mb_artifact_is_circuit(const json_t *a);

/* Reads circuit artifact a (checked by mb_artifact_check first: MB_EINVALID
 * otherwise) into *out; strings are borrowed from a, which must outlive
 * *out. Disposed with mb_artifact_circuit_dispose. */
int mb_artifact_circuit_read(mb_artifact_circuit *out, const json_t *a, mb_error *err);
void mb_artifact_circuit_dispose(mb_artifact_circuit *c);

/* --- the gate's comparison ------------------------------------------------------------ */

typedef enum mb_artifact_change {
	MB_ARTIFACT_IDENTICAL = 0, /* bitwise the same JSON */
	MB_ARTIFACT_MOVED,         /* circuits: the same nodes and edges, numbers moved */
	MB_ARTIFACT_CHANGED,       /* nodes or edges added or removed; other kinds: any change */
	MB_ARTIFACT_NEW,           /* the candidate has an artifact, the baseline none */
	MB_ARTIFACT_GONE,          /* the baseline has one, the candidate none */
} mb_artifact_change;

/* "IDENTICAL", "MOVED", "CHANGED", "NEW", "GONE". */
const char *mb_artifact_change_name(mb_artifact_change c);

/* Whether a CHANGED circuit is within what resampling the discovery data
 * produces: the node Jaccard of baseline and candidate circuits against the
 * lower CI bound of the stability Jaccard (the lower of the two runs' when
 * both report it). */
typedef enum mb_artifact_noise {
	MB_ARTIFACT_NOISE_NONE = 0, /* not a changed circuit */
	MB_ARTIFACT_NOISE_WITHIN,   /* Jaccard >= that bound: resampling alone does this */
	MB_ARTIFACT_NOISE_BEYOND,   /* Jaccard < that bound: more than resampling noise */
	MB_ARTIFACT_NOISE_UNKNOWN,  /* neither run reports stability */
} mb_artifact_noise;

/* "-", "within resampling noise", "beyond resampling noise", "noise unknown". */
const char *mb_artifact_noise_name(mb_artifact_noise n);

typedef struct mb_artifact_node_change {
	char *id;         /* owned */
	double effect;
	double inclusion; /* in the run that has the node; NaN when not reported */
} mb_artifact_node_change;

typedef struct mb_artifact_edge_change {
	char *from, *to, *via; /* owned */
	double effect;
} mb_artifact_edge_change;

typedef struct mb_artifact_diff {
	char *entry;                 /* owned */
	char *kind;                  /* owned: the candidate's kind, else the baseline's */
	mb_artifact_change change;
	mb_artifact_noise noise;
	char first_diff[256];        /* where the JSON first differs ("" when identical) */
	int circuits;                /* both are circuits: the fields below are filled */
	size_t base_nodes, cand_nodes, base_edges, cand_edges;
	mb_artifact_node_change *nodes_added, *nodes_removed; /* (n_nodes_added/_removed) */
	size_t n_nodes_added, n_nodes_removed;
	mb_artifact_edge_change *edges_added, *edges_removed;
	size_t n_edges_added, n_edges_removed;
	double node_jaccard, edge_jaccard; /* |B n C| / |B u C| (1 for two empty sets) */
	double noise_bound;                /* the stability bound used; NaN when none */
	mb_artifact_stability base_stability, cand_stability;
} mb_artifact_diff;

/* Compares entry `entry`'s artifacts: base and cand may each be NULL (then
 * NEW or GONE; both NULL is a programming error). Both are checked
 * (mb_artifact_check) by whoever read them. Node changes are listed in
 * artifact order (removed: the baseline's, added: the candidate's). */
int mb_artifact_diff_make(mb_artifact_diff *out, const char *entry, const json_t *base,
			  const json_t *cand, mb_error *err);
void mb_artifact_diff_dispose(mb_artifact_diff *d);

#endif
