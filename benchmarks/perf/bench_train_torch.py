#!/usr/bin/env python3
"""The PyTorch side of benchmarks/perf/bench_train.sh: the same model and
optimizer as mechbench's zoo trainer, from the same initial weights, on the same
train pairs in the same order (a directory prepared by `bench_train --prepare`).

    /usr/bin/python3 bench_train_torch.py --run DIR [--steps N] [--warmup W]
        [--threads T] [--foreach]

Prints one JSON line like bench_train --run: {"impl", "threads", "steps",
"seconds", "steps_per_s", "losses"}. Only the modadd recipe (full batch) is
supported: its data is a pure function of the pairs file.

The model is written the way a PyTorch user would write it for speed: plain
tensor ops in float32, the Hugging Face GPT-2 Conv1D layout (x @ W + b), the
causal mask with masked_fill and softmax, the unembedding applied to the last
position only (the loss reads nothing else), torch.nn.functional.cross_entropy,
and torch.optim.AdamW with the recipe's settings and the same linear warmup
(lr_s = lr * min(1, s / warmup_steps) for step s = 1, 2, ...).
"""
import argparse
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        assert meta["dtype"] == "F32", name
        b, e = meta["data_offsets"]
        arr = np.frombuffer(data[base + b:base + e], dtype="<f4").reshape(meta["shape"])
        out[name[len("transformer."):] if name.startswith("transformer.") else name] = arr.copy()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--foreach", action="store_true", help="torch.optim.AdamW(foreach=True)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    with open(os.path.join(args.run, "recipe.json")) as f:
        rec = json.load(f)
    if rec["task"] != "modadd":
        sys.exit("bench_train_torch.py: only the modadd recipe is supported")
    with open(os.path.join(args.run, "init", "config.json")) as f:
        cfg = json.load(f)
    w = read_safetensors(os.path.join(args.run, "init", "model.safetensors"))
    pairs = np.load(os.path.join(args.run, "pairs.npy"))

    p = rec["p"]
    D, H, L = cfg["n_embd"], cfg["n_head"], cfg["n_layer"]
    Dh = D // H
    ln = cfg.get("normalization_type", "LN") == "LN"
    attn_only = cfg.get("attn_only", False)
    tied = cfg.get("tie_word_embeddings", True)
    eps = cfg.get("layer_norm_epsilon", 1e-5)
    act = {"relu": F.relu, "gelu": F.gelu,
           "gelu_new": lambda x: F.gelu(x, approximate="tanh")}[cfg["activation_function"]]

    P = {k: torch.nn.Parameter(torch.from_numpy(v)) for k, v in sorted(w.items())}
    Wu = P["wte.weight"] if tied else P["lm_head.weight"]

    a = torch.from_numpy(pairs // p)
    b = torch.from_numpy(pairs % p)
    tokens = torch.stack([a, b, torch.full_like(a, p)], 1)
    targets = (a + b) % p
    T = 3
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)

    def layer_norm(x, name):
        return F.layer_norm(x, (D,), P[name + ".weight"], P[name + ".bias"], eps) if ln else x

    def loss_fn():
        B = tokens.shape[0]
        x = P["wte.weight"][tokens] + P["wpe.weight"][:T]
        for l in range(L):
            h = layer_norm(x, "h.%d.ln_1" % l)
            qkv = h @ P["h.%d.attn.c_attn.weight" % l] + P["h.%d.attn.c_attn.bias" % l]
            q, k, v = (t.view(B, T, H, Dh).transpose(1, 2) for t in qkv.split(D, -1))
            s = (q @ k.transpose(-1, -2)) / math.sqrt(Dh)
            pat = s.masked_fill(mask, float("-inf")).softmax(-1)
            z = (pat @ v).transpose(1, 2).reshape(B, T, D)
            x = x + z @ P["h.%d.attn.c_proj.weight" % l] + P["h.%d.attn.c_proj.bias" % l]
            if not attn_only:
                h = layer_norm(x, "h.%d.ln_2" % l)
                h = act(h @ P["h.%d.mlp.c_fc.weight" % l] + P["h.%d.mlp.c_fc.bias" % l])
                x = x + h @ P["h.%d.mlp.c_proj.weight" % l] + P["h.%d.mlp.c_proj.bias" % l]
        xl = layer_norm(x[:, -1], "ln_f")
        return F.cross_entropy(xl @ Wu.T, targets)

    ad = rec["adamw"]
    opt = torch.optim.AdamW(P.values(), lr=ad["lr"], betas=(ad["beta1"], ad["beta2"]),
                            eps=ad["eps"], weight_decay=ad["weight_decay"],
                            **({"foreach": True} if args.foreach else {}))
    warm = rec["warmup_steps"]
    losses = []
    t0 = None
    for s in range(1, args.warmup + args.steps + 1):
        if s == args.warmup + 1:
            t0 = time.perf_counter()
        lr = ad["lr"] * min(1.0, s / warm) if warm > 0 else ad["lr"]
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        if rec["clip_norm"] > 0:
            torch.nn.utils.clip_grad_norm_(P.values(), rec["clip_norm"])
        opt.step()
        if len(losses) < 10:
            losses.append(float(loss))
    t1 = time.perf_counter()
    if t0 is None:
        t0 = t1
    print(json.dumps({"impl": "torch" + (" foreach" if args.foreach else ""),
                      "threads": torch.get_num_threads(), "steps": args.steps,
                      "seconds": t1 - t0,
                      "steps_per_s": args.steps / (t1 - t0) if args.steps else 0.0,
                      "losses": losses, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
