#!/usr/bin/python3
"""bench_sae_torch.py: the PyTorch side of bench_sae.sh: the same TopK SAE (Gao et al.
2024, as sae.h defines it: pre = (x - b_dec) W_enc + b_enc, ReLU of the top k, x_hat =
f W_dec + b_dec, AuxK over latents dead for min(10M, tokens / 4) rows, unit-norm decoder
rows with the gradient's parallel component removed, Adam (0.9, 0.999, eps 6.25e-10)),
the same data order (rows 0..R-1 for the normalisation and the geometric-median b_dec,
then step t on rows t R .. (t + 1) R - 1 mod N) and the same timing (step 1 untimed).
Prints one JSON line like bench_sae. Written for this benchmark, not taken from SAELens.
"""
import argparse
import json
import resource
import time

import numpy as np
import torch


def geometric_median(x, iters=100):
    y = x.mean(0)
    for _ in range(iters):
        w = 1.0 / (x - y).norm(dim=1).clamp_min(1e-12)
        ny = (w[:, None] * x).sum(0) / w.sum()
        done = (ny - y).norm() <= 1e-6 * ny.norm()
        y = ny
        if done:
            break
    return y


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--width", type=int, default=4096)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    data = torch.from_numpy(np.load(a.data)).float()
    N, D = data.shape
    R, S, k = a.batch, a.width, a.k
    tokens = R * (a.steps + 1)
    dead_tokens = min(10_000_000, tokens // 4)
    init = data[:R].double()
    scale = float((D / (init ** 2).sum(1).mean()).sqrt())
    b_dec = geometric_median(init * scale).float()
    W_dec = torch.randn(S, D)
    W_dec /= W_dec.norm(dim=1, keepdim=True)
    W_enc = W_dec.t().clone().contiguous()
    b_enc = torch.zeros(S)
    params = [torch.nn.Parameter(t) for t in (W_enc, b_enc, W_dec, b_dec)]
    W_enc, b_enc, W_dec, b_dec = params
    opt = torch.optim.Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=6.25e-10)
    last = torch.zeros(S, dtype=torch.long)
    seen = 0
    losses = []
    t1 = None
    half = D // 2
    for t in range(1, a.steps + 2):
        if t == 2:
            t1 = time.perf_counter()
            c1 = time.process_time()
        lo = (t * R) % N
        x = data[lo:lo + R] if lo + R <= N else torch.cat([data[lo:], data[:R - (N - lo)]])
        x = x * scale
        dead = (seen - last) >= dead_tokens
        pre = (x - b_dec) @ W_enc + b_enc
        vals, idx = pre.topk(k, dim=-1)
        f = torch.zeros_like(pre).scatter(-1, idx, torch.relu(vals))
        x_hat = f @ W_dec + b_dec
        loss = ((x_hat - x) ** 2).sum(-1).mean()
        n_dead = int(dead.sum())
        if n_dead > 0:
            k_aux = min(half, n_dead)
            e = (x - x_hat).detach()
            masked = torch.where(dead[None, :], pre, torch.full_like(pre, -float("inf")))
            av, ai = masked.topk(k_aux, dim=-1)
            z = torch.zeros_like(pre).scatter(-1, ai, torch.relu(av))
            loss = loss + (1.0 / 32) * min(n_dead / half, 1.0) * ((e - z @ W_dec) ** 2).sum(-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            g = W_dec.grad
            g -= (g * W_dec).sum(1, keepdim=True) / (W_dec * W_dec).sum(1, keepdim=True) * W_dec
        opt.step()
        with torch.no_grad():
            W_dec /= W_dec.norm(dim=1, keepdim=True)
        seen += R
        fired = (f > 0).any(0)
        last[fired] = seen
        if len(losses) < 5:
            losses.append(float(loss))
    secs = time.perf_counter() - t1
    cpu = time.process_time() - c1
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"impl": "torch", "threads": a.threads, "arch": "topk", "d_in": D,
                      "width": S, "batch": R, "steps": a.steps, "seconds": round(secs, 4),
                      "tokens_per_s": round(a.steps * R / secs, 1),
                      "cpu_seconds": round(cpu, 4),
                      "tokens_per_cpu_s": round(a.steps * R / cpu, 1),
                      "max_rss_mb": round(rss, 1), "losses": losses}))


if __name__ == "__main__":
    main()
