#!/usr/bin/python3
"""The PyTorch side of benchmarks/perf/run_edit.sh: the same ROME and MEMIT
edits as bench_edit.c on the same model, corpus, requests and prefixes
(written by `bench_edit --prepare DIR`), through the independent PyTorch
implementation of tests/fixtures/edit/gpt2_ref.py (the golden tests' reference).

    bench_edit_torch.py DIR [--edits E] [--threads T]

Prints one JSON line like bench_edit --run.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

ap = argparse.ArgumentParser()
ap.add_argument("dir")
ap.add_argument("--edits", type=int, default=100)
ap.add_argument("--threads", type=int, default=2)
a = ap.parse_args()
torch.set_num_threads(a.threads)
os.environ["MB_EDIT_MODEL"] = os.path.join(a.dir, "model")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests",
                                "fixtures", "edit"))
import gpt2_ref as g  # noqa: E402

corpus = torch.from_numpy(np.load(os.path.join(a.dir, "corpus.npy")).astype(np.int64))
R = torch.from_numpy(np.load(os.path.join(a.dir, "requests.npy")).astype(np.int64))
P = torch.from_numpy(np.load(os.path.join(a.dir, "prefixes.npy")).astype(np.int64))
prefixes = [P[i, :(0 if i == 0 else 5 if i <= 10 else 10)] for i in range(P.shape[0])]
reqs = [(R[j, :8], 4, R[j, 8:9], R[j, 9:12], 1) for j in range(R.shape[0])]
LAYERS = [1, 2]

t0, c0 = time.perf_counter(), time.process_time()
C = [torch.cat([g.mom2(corpus[i:i + 128], l)[None] for i in range(0, corpus.shape[0], 128)]).mean(0)
     for l in LAYERS]
t_stats, c_stats = time.perf_counter() - t0, time.process_time() - c0


def keys(prompt, sl, l):
    with torch.no_grad():
        _, K, _ = g.forward(g.batch([torch.cat([p, prompt]) for p in prefixes]), keys_at=l)
    return K, [len(p) + sl for p in prefixes]


# ROME at layer 1, C precomputed
W0 = {k: v.clone() for k, v in g.W.items()}
t0, c0 = time.perf_counter(), time.process_time()
prompt, sl, target, kl, ksl = reqs[0]
K, idx = keys(prompt, sl, 1)
kstar = torch.stack([K[i, j] for i, j in enumerate(idx)]).mean(0)
u = torch.linalg.solve(C[0].double(), kstar.double())
u = (u / u.norm()).float()
v0, delta, losses = g.optimise(prompt, sl, target, kl, ksl, prefixes, "mlp", 1)
with torch.no_grad():
    _, Kb, Ob = g.forward(prompt[None], keys_at=1)
r = (v0 + delta - Ob[0, sl]) / torch.dot(Kb[0, sl], u)
g.W["h.1.mlp.c_proj.weight"] = g.W["h.1.mlp.c_proj.weight"] + u[:, None] @ r[None, :]
t_rome, c_rome = time.perf_counter() - t0, time.process_time() - c0
g.W.update({k: v.clone() for k, v in W0.items()})

# MEMIT of E edits over layers 1-2
t0, c0 = time.perf_counter(), time.process_time()
zs = []
for prompt, sl, target, kl, ksl in reqs[:a.edits]:
    v0, delta, _ = g.optimise(prompt, sl, target, kl, ksl, prefixes, "block", LAYERS[-1],
                              clamp=0.75)
    zs.append(v0 + delta)
Z = torch.stack(zs, 1)
for i, l in enumerate(LAYERS):
    ks, cur = [], []
    for prompt, sl, target, kl, ksl in reqs[:a.edits]:
        K, idx = keys(prompt, sl, l)
        with torch.no_grad():
            _, _, _, Hd = g.forward(prompt[None], hidden_at=LAYERS[-1])
        ks.append(torch.stack([K[0, idx[0]], torch.stack([K[j, idx[j]]
                                                         for j in range(1, len(idx))]).mean(0)]).mean(0))
        cur.append(Hd[0, sl])
    Km = torch.stack(ks, 1).double()
    resid = (Z - torch.stack(cur, 1)).double() / (len(LAYERS) - i)
    adj = torch.linalg.solve(20000.0 * C[i].double() + Km @ Km.T, Km)
    g.W[f"h.{l}.mlp.c_proj.weight"] = g.W[f"h.{l}.mlp.c_proj.weight"] + (resid @ adj.T).T.float()
t_memit, c_memit = time.perf_counter() - t0, time.process_time() - c0

print(json.dumps({"impl": "pytorch", "threads": a.threads,
                  "stats_tokens_per_s": round(len(LAYERS) * corpus.numel() / t_stats),
                  "rome_s": round(t_rome, 4), "rome_loss": [sum(losses[0]), sum(losses[-1])],
                  "rome_steps": len(losses), "memit_s": round(t_memit, 3),
                  "memit_edits": a.edits, "stats_cpu_s": round(c_stats, 3),
                  "rome_cpu_s": round(c_rome, 4), "memit_cpu_s": round(c_memit, 3)}))
