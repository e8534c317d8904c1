#!/usr/bin/python3
"""Prints the figures and ratios of run_forward.sh from its three JSON files
(c.json from bench_forward, torch.json and torch_tuned.json from
bench_forward_torch.py) in DIR. Each line gives the wall-time figure and, in
brackets, the same from process CPU time."""
import json
import sys

d = sys.argv[1]
c = json.load(open(d + "/c.json"))
t = json.load(open(d + "/torch.json"))
tt = json.load(open(d + "/torch_tuned.json"))
tok = c["batch"] * c["seq"]


def ok(x):
    return "meets" if x else "MISSES"


def line(label, wall, cpu, extra=""):
    print("%-50s %8.3f s %6.0f tok/s   [cpu %7.3f s]  %s" % (label, wall, tok / wall, cpu, extra))


print()
print("GPT-2-small shapes (12 x 768, 12 heads, 3072, vocab 50257), B=%d T=%d, %d threads, "
      "OpenBLAS %s (parallel mode %d), median of %d runs" % (
          c["batch"], c["seq"], c["threads"], c["blas_core"], c["blas_parallel"], c["reps"]))
print("targets judged on wall time; [cpu ...] ratios are the contention-robust proxy")
line("(a) GEMMs of one forward alone, OpenBLAS", c["gemm_limit_s"], c["gemm_limit_cpu_s"])
rw = c["gemm_limit_s"] / c["ours_plain_s"]
rc = c["gemm_limit_cpu_s"] / c["ours_plain_cpu_s"]
line("(b) our forward, all logits", c["ours_plain_s"], c["ours_plain_cpu_s"],
     "%.1f%% of (a) [cpu %.1f%%]  target >= 85%%: %s" % (100 * rw, 100 * rc, ok(rw >= 0.85)))
line("    our forward, every hook point cached", c["ours_cached_s"], c["ours_cached_cpu_s"])
for name, j in (("as installed", t), ("tuned", tt)):
    rp, rpc = j["plain_s"] / c["ours_plain_s"], j["plain_cpu_s"] / c["ours_plain_cpu_s"]
    rh, rhc = j["cached_s"] / c["ours_cached_s"], j["cached_cpu_s"] / c["ours_cached_cpu_s"]
    line("(c) PyTorch %s, plain" % name, j["plain_s"], j["plain_cpu_s"],
         "ours %.2fx [cpu %.2fx]  target >= 1.3x: %s" % (rp, rpc, ok(rp >= 1.3)))
    line("    PyTorch %s, every hook cached (%d)" % (name, j["n_cached_points"]), j["cached_s"],
         j["cached_cpu_s"], "ours %.2fx [cpu %.2fx]  target >= 1.7x: %s" % (rh, rhc, ok(rh >= 1.7)))
w = c["weights_bytes"] / 2**20
peak = c["peak_rss_forward_kb"] / 1024
print("%-50s %8.0f MB = weights %.0f MB + %.0f MB   target <= weights + 400 MB: %s" % (
    "peak RSS of a plain forward", peak, w, peak - w, ok(peak - w <= 400)))
if c["sweep_full_all_s"] > 0:
    how = "all 144 heads" if c["sweep_heads_timed"] >= 144 else \
        "head 0 of each layer timed, x12; the clean caching run counted once"
    print("144-head zero-ablation sweep, %d prompts x %d tokens (%s):" % (
        c["sweep_prompts"], c["sweep_len"], how))
    rows = (("every ablation a full forward, all logits", "full_all"),
            ("every ablation a full forward, last-position logits", "full_last"),
            ("restart at the ablated layer, last-position logits", "restart_last"))
    for label, k in rows:
        print("    %-58s %8.2f s   [cpu %8.2f s]" % (label, c["sweep_%s_s" % k],
                                                   c["sweep_%s_cpu_s" % k]))
    fa, fl, rl = c["sweep_full_all_s"], c["sweep_full_last_s"], c["sweep_restart_last_s"]
    fac, flc, rlc = (c["sweep_full_all_cpu_s"], c["sweep_full_last_cpu_s"],
                     c["sweep_restart_last_cpu_s"])
    print("    speed-up vs full forwards with all logits %26.2fx   [cpu %.2fx]  target >= 2.5x: %s"
          % (fa / rl, fac / rlc, ok(fa / rl >= 2.5)))
    print("    speed-up vs full forwards with the same logits %21.2fx   [cpu %.2fx]" % (
        fl / rl, flc / rlc))
print("OpenBLAS as is: an item's rows alone vs inside the batch differ in %.1f%% of QKV outputs, "
      "by up to %.1f ULP of the largest output;\n    the engine's row groups of %d make them "
      "identical" % (100 * c["blas_row_ulp_fraction"], c["blas_row_ulp_max"], c["row_group"]))
if "c_vs_torch_last_logits_max_abs" in t:
    print("same function: our logits vs PyTorch's at item 0's last position, max |diff| %.2g" %
          t["c_vs_torch_last_logits_max_abs"])
