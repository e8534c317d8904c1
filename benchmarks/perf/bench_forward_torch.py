#!/usr/bin/python3
"""PyTorch side of the forward benchmark (benchmarks/perf/run_forward.sh).

  bench_forward_torch.py write DIR
      Writes GPT-2-small-shaped random weights (12 layers, d_model 768, 12 heads,
      d_mlp 3072, vocab 50257, 1024 positions; GPT-2's init scale, seed 20240501)
      as a Hugging Face checkpoint: DIR/config.json + DIR/model.safetensors
      (~500 MB; a temp dir, never committed). Both sides load this file.

  bench_forward_torch.py bench DIR OUT.json [--batch 4 --seq 256 --reps 5]
      Times, with torch.set_num_threads(2), on DIR/tokens.npy (written by the C
      side), an equivalent PyTorch GPT-2:
        plain:  the fastest plain forward we know in this torch (F.layer_norm,
                addmm, tanh GELU, masked softmax), all logits;
        cached: a TransformerLens-style forward that keeps every hook point
                (the same points the C side caches: all but the split q/k/v
                inputs and hook_result), LayerNorm written out so that
                hook_normalized exists, as run_with_cache does.
      Reports median wall and CPU seconds per forward, and the max |difference| of its logits
      at the last position of item 0 against DIR/c_logits_last.npy (the C
      engine's), so both sides provably compute the same function.

Run with /usr/bin/python3 (Debian's python3-torch).
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

L, D, H, M, V, P = 12, 768, 12, 3072, 50257, 1024
DH = D // H
EPS = 1e-5


def write_checkpoint(d):
    os.makedirs(d, exist_ok=True)
    g = torch.Generator().manual_seed(20240501)

    def rnd(*shape, std):
        return (torch.randn(*shape, generator=g) * std).numpy().astype(np.float32)

    t = {"wte.weight": rnd(V, D, std=0.02), "wpe.weight": rnd(P, D, std=0.01)}
    for l in range(L):
        p = f"h.{l}."
        t[p + "ln_1.weight"] = 1.0 + rnd(D, std=0.1)
        t[p + "ln_1.bias"] = rnd(D, std=0.02)
        t[p + "attn.c_attn.weight"] = rnd(D, 3 * D, std=0.02)
        t[p + "attn.c_attn.bias"] = rnd(3 * D, std=0.02)
        t[p + "attn.c_proj.weight"] = rnd(D, D, std=0.02 / math.sqrt(2 * L))
        t[p + "attn.c_proj.bias"] = rnd(D, std=0.02)
        t[p + "ln_2.weight"] = 1.0 + rnd(D, std=0.1)
        t[p + "ln_2.bias"] = rnd(D, std=0.02)
        t[p + "mlp.c_fc.weight"] = rnd(D, M, std=0.02)
        t[p + "mlp.c_fc.bias"] = rnd(M, std=0.02)
        t[p + "mlp.c_proj.weight"] = rnd(M, D, std=0.02 / math.sqrt(2 * L))
        t[p + "mlp.c_proj.bias"] = rnd(D, std=0.02)
    t["ln_f.weight"] = 1.0 + rnd(D, std=0.1)
    t["ln_f.bias"] = rnd(D, std=0.02)
    # safetensors: 8-byte header length, JSON header (names sorted), data
    names = sorted(t)
    header, off = {}, 0
    for n in names:
        nbytes = t[n].nbytes
        header[n] = {"dtype": "F32", "shape": list(t[n].shape), "data_offsets": [off, off + nbytes]}
        off += nbytes
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * ((8 - len(hj) % 8) % 8)
    with open(os.path.join(d, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for n in names:
            f.write(np.ascontiguousarray(t[n]).tobytes())
    cfg = {"model_type": "gpt2", "vocab_size": V, "n_positions": P, "n_embd": D, "n_layer": L,
           "n_head": H, "n_inner": M, "activation_function": "gelu_new",
           "layer_norm_epsilon": EPS, "tie_word_embeddings": True}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)


def read_checkpoint(d):
    with open(os.path.join(d, "model.safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    w = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        b, e = h["data_offsets"]
        w[name] = torch.from_numpy(np.frombuffer(data[b:e], dtype=np.float32).reshape(h["shape"]).copy())
    return w


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class Plain:
    """The fastest straightforward forward: fused library ops, no hooks."""

    def __init__(self, w):
        self.w = w

    def __call__(self, tok):
        w = self.w
        B, T = tok.shape
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        x = w["wte.weight"][tok] + w["wpe.weight"][:T]
        for l in range(L):
            p = f"h.{l}."
            h = F.layer_norm(x, (D,), w[p + "ln_1.weight"], w[p + "ln_1.bias"], EPS)
            qkv = torch.addmm(w[p + "attn.c_attn.bias"], h.view(B * T, D), w[p + "attn.c_attn.weight"])
            q, k, v = qkv.view(B, T, 3, H, DH).permute(2, 0, 3, 1, 4)
            s = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(DH)
            s.masked_fill_(mask, float("-inf"))
            z = torch.matmul(torch.softmax(s, dim=-1), v)
            z = z.transpose(1, 2).reshape(B * T, D)
            x = x + torch.addmm(w[p + "attn.c_proj.bias"], z, w[p + "attn.c_proj.weight"]).view(B, T, D)
            h = F.layer_norm(x, (D,), w[p + "ln_2.weight"], w[p + "ln_2.bias"], EPS)
            a = F.gelu(torch.addmm(w[p + "mlp.c_fc.bias"], h.view(B * T, D), w[p + "mlp.c_fc.weight"]),
                       approximate="tanh")
            x = x + torch.addmm(w[p + "mlp.c_proj.bias"], a, w[p + "mlp.c_proj.weight"]).view(B, T, D)
        h = F.layer_norm(x, (D,), w["ln_f.weight"], w["ln_f.bias"], EPS)
        return torch.matmul(h, w["wte.weight"].t())


class Cached:
    """TransformerLens-style forward keeping every hook point (run_with_cache)."""

    def __init__(self, w):
        self.w = w

    @staticmethod
    def ln(x, wt, b, cache, name):
        x = x - x.mean(-1, keepdim=True)
        scale = (x.pow(2).mean(-1, keepdim=True) + EPS).sqrt()
        x = x / scale
        cache[name] = x
        return x * wt + b

    def __call__(self, tok):
        w, c = self.w, {}
        B, T = tok.shape
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        e = w["wte.weight"][tok]
        pe = w["wpe.weight"][:T].unsqueeze(0).expand(B, T, D)
        c["hook_embed"], c["hook_pos_embed"] = e, pe
        x = e + pe
        for l in range(L):
            p, hp = f"h.{l}.", f"blocks.{l}."
            c[hp + "hook_resid_pre"] = x
            h = self.ln(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"], c, hp + "ln1.hook_normalized")
            qkv = h @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]
            q, k, v = [t.reshape(B, T, H, DH) for t in qkv.split(D, dim=-1)]
            c[hp + "attn.hook_q"], c[hp + "attn.hook_k"], c[hp + "attn.hook_v"] = q, k, v
            s = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(DH)
            s = s.masked_fill(mask, float("-inf"))
            c[hp + "attn.hook_attn_scores"] = s
            pat = torch.softmax(s, dim=-1)
            c[hp + "attn.hook_pattern"] = pat
            z = torch.einsum("bhqk,bkhd->bqhd", pat, v)
            c[hp + "attn.hook_z"] = z
            ao = z.reshape(B, T, D) @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
            c[hp + "hook_attn_out"] = ao
            x = x + ao
            c[hp + "hook_resid_mid"] = x
            h = self.ln(x, w[p + "ln_2.weight"], w[p + "ln_2.bias"], c, hp + "ln2.hook_normalized")
            pre = h @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"]
            c[hp + "mlp.hook_pre"] = pre
            post = gelu_new(pre)
            c[hp + "mlp.hook_post"] = post
            mo = post @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
            c[hp + "hook_mlp_out"] = mo
            x = x + mo
            c[hp + "hook_resid_post"] = x
        h = self.ln(x, w["ln_f.weight"], w["ln_f.bias"], c, "ln_final.hook_normalized")
        logits = h @ w["wte.weight"].t()
        c["logits"] = logits
        return logits, c


def timeit(fn, reps):
    """Median wall and CPU (process, all threads) seconds of fn, after two warm-ups."""
    fn()
    fn()
    ts, cs = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        ts.append(time.perf_counter() - t0)
        cs.append(time.process_time() - c0)
    return float(np.median(ts)), float(np.median(cs)), ts


def bench(d, out, B, T, reps):
    torch.set_num_threads(2)
    w = read_checkpoint(d)
    w.setdefault("lm_head.weight", w["wte.weight"])
    tok = torch.from_numpy(np.load(os.path.join(d, "tokens.npy")).astype(np.int64))
    assert tok.shape == (B, T), tok.shape
    plain, cached = Plain(w), Cached(w)
    res = {"torch_version": torch.__version__, "threads": torch.get_num_threads(), "batch": B,
           "seq": T, "reps": reps,
           "env": {k: os.environ.get(k, "") for k in ("OMP_WAIT_POLICY", "LD_LIBRARY_PATH",
                                                      "MALLOC_MMAP_MAX_")}}
    with torch.inference_mode():
        lp = plain(tok)
        lc, cache = cached(tok)
        res["n_cached_points"] = len(cache)
        res["plain_vs_cached_max_abs"] = float((lp - lc).abs().max())
        cpath = os.path.join(d, "c_logits_last.npy")
        if os.path.exists(cpath):
            cl = torch.from_numpy(np.load(cpath))
            res["c_vs_torch_last_logits_max_abs"] = float((lp[0, T - 1] - cl).abs().max())
        del lc, cache
        res["plain_s"], res["plain_cpu_s"], res["plain_all_s"] = timeit(lambda: plain(tok), reps)
        res["cached_s"], res["cached_cpu_s"], res["cached_all_s"] = timeit(lambda: cached(tok), reps)
    with open(out, "w") as f:
        json.dump(res, f, indent=1)
    print(json.dumps({k: res[k] for k in ("plain_s", "cached_s", "plain_cpu_s", "cached_cpu_s",
                                          "n_cached_points",
                                          "c_vs_torch_last_logits_max_abs") if k in res}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["write", "bench"])
    ap.add_argument("dir")
    ap.add_argument("out", nargs="?")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--shape", choices=["small", "medium"], default="small",
                    help="write: GPT-2-small (12 x 768) or GPT-2-medium (24 x 1024) shapes")
    a = ap.parse_args()
    if a.mode == "write":
        if a.shape == "medium":
            global L, D, H, M, DH
            L, D, H, M = 24, 1024, 16, 4096
            DH = D // H
        write_checkpoint(a.dir)
    else:
        if not a.out:
            sys.exit("bench needs OUT.json")
        bench(a.dir, a.out, a.batch, a.seq, a.reps)


if __name__ == "__main__":
    main()
