#!/bin/bash
# run_checklist.sh: every figure of the Performance lists of issues 15 (GEMM
# backends, attention) and 16 (Pythia and GPT-2-medium shapes) in one run,
# with a summary of the ratios against their targets.
#
#   benchmarks/perf/run_checklist.sh [BUILD_DIR] [REPS] [TRAIN_STEPS]
#
# In order (a quiet 2-core machine: ~15 minutes with REPS=3; every figure
# prints wall and CPU time, getrusage / process_time, all threads):
#   1. bench_gemm --reps 10: GPT-2-small GEMM shapes per backend and the
#      AVX-512 FMA peak of the same run (oneDNN >= 85% of it);
#   2. GPT-2-small-shaped random weights (bench_forward_torch.py write), then
#      bench_forward under openblas and onednn and PyTorch tuned (passive
#      waits, no malloc trimming, OpenMP OpenBLAS) on the same weights and
#      tokens, B=4 T=256 (plain and every hook cached) and B=1 T=1024;
#   3. bench_neox backends: the Pythia-160M shape's forward against its GEMM
#      bound (B=4 T=256, B=1 T=2048) and attention alone at T=1024, 2048;
#   4. bench_neox forward --shape gpt2-medium under openblas and onednn, and
#      the Pythia rotary share (B=1 T=2048, onednn);
#   5. run_backends.sh: modadd training and the head sweep per backend.
# With MB_CHECKLIST_KEEP=DIR, every figure's raw output (the JSON files the
# summary reads, the benchmarks' logs) is copied to DIR at the end, so that a
# summary line can be checked against its measurement.
set -euo pipefail
cd "$(dirname "$0")/../.."

build="${1:-build}"
reps="${2:-3}"
steps="${3:-20}"
py=/usr/bin/python3
for b in bench_gemm bench_forward bench_neox bench_train; do
  [ -x "$build/$b" ] || { echo "run_checklist.sh: $build/$b not built" >&2; exit 1; }
done
tmp=$(mktemp -d /tmp/mb-checklist-XXXXXX)
keep="${MB_CHECKLIST_KEEP:-}"
trap '[ -n "$keep" ] && mkdir -p "$keep" && cp "$tmp"/*.json "$tmp"/*.txt "$keep"/ 2>/dev/null; rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive
tuned=(env MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 MALLOC_TOP_PAD_=1073741824
  LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp)

echo "== load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== 1. GEMMs alone"
"$build/bench_gemm" --reps 10 | tee "$tmp/gemm.txt"

echo "== 2. GPT-2-small forward"
$py benchmarks/perf/bench_forward_torch.py write "$tmp/gpt2s" >&2
for shape in "4 256" "1 1024"; do
  set -- $shape
  for g in openblas onednn; do
    MB_GEMM=$g "$build/bench_forward" "$tmp/gpt2s" "$tmp/c-$g-$1x$2.json" --batch "$1" --seq "$2" \
      --reps "$reps" --sweep-heads none >/dev/null 2>&1
  done
  "${tuned[@]}" $py benchmarks/perf/bench_forward_torch.py bench "$tmp/gpt2s" \
    "$tmp/torch-$1x$2.json" --batch "$1" --seq "$2" --reps "$reps" >/dev/null 2>&1
done

echo "== 3. Pythia-160M shape: forward share of the GEMM bound, attention"
"$build/bench_neox" backends --reps "$reps" | tee "$tmp/neox.txt"

echo "== 4. GPT-2-medium shape, rotary share"
for g in openblas onednn; do
  echo "-- $g"
  MB_GEMM=$g "$build/bench_neox" forward --shape gpt2-medium --reps "$reps" | tee "$tmp/medium-$g.txt"
done
echo "-- rotary, onednn, B=1 T=2048"
MB_GEMM=onednn "$build/bench_neox" forward --batch 1 --seq 2048 --reps "$reps" | tee "$tmp/rotary.txt"

echo "== 5. training and the head sweep per backend"
benchmarks/perf/run_backends.sh "$build" "$steps" 1 2>/dev/null | tee "$tmp/backends.txt"

echo "== load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "== summary: GPT-2-small forward (seconds: wall [CPU])"
$py - "$tmp" <<'PY'
import json, sys
d = sys.argv[1]
def j(n):
    return json.load(open("%s/%s.json" % (d, n)))
def ok(x):
    return "met" if x else "MISSED"
for b, t in ((4, 256), (1, 1024)):
    o, n, p = j("c-openblas-%dx%d" % (b, t)), j("c-onednn-%dx%d" % (b, t)), j("torch-%dx%d" % (b, t))
    print("B=%d T=%d: openblas %.3f [%.3f], onednn %.3f [%.3f], PyTorch tuned %.3f [%.3f]" % (
        b, t, o["ours_plain_s"], o["ours_plain_cpu_s"], n["ours_plain_s"], n["ours_plain_cpu_s"],
        p["plain_s"], p["plain_cpu_s"]))
    need = 1.6 if b == 4 else 1.5
    rw, rc = o["ours_plain_s"] / n["ours_plain_s"], o["ours_plain_cpu_s"] / n["ours_plain_cpu_s"]
    print("  onednn vs openblas, plain: %.2fx wall, %.2fx CPU (>= %.1fx: %s wall, %s CPU)" % (
        rw, rc, need, ok(rw >= need), ok(rc >= need)))
    rw, rc = p["plain_s"] / n["ours_plain_s"], p["plain_cpu_s"] / n["ours_plain_cpu_s"]
    tgt = " (>= 1.8x: %s wall, %s CPU)" % (ok(rw >= 1.8), ok(rc >= 1.8)) if b == 4 else ""
    print("  onednn vs PyTorch tuned, plain: %.2fx wall, %.2fx CPU%s" % (rw, rc, tgt))
    if b == 4:
        rw = o["ours_cached_s"] / n["ours_cached_s"]
        rc = o["ours_cached_cpu_s"] / n["ours_cached_cpu_s"]
        print("  every hook cached: openblas %.3f [%.3f], onednn %.3f [%.3f], PyTorch tuned "
              "%.3f [%.3f]" % (o["ours_cached_s"], o["ours_cached_cpu_s"], n["ours_cached_s"],
                               n["ours_cached_cpu_s"], p["cached_s"], p["cached_cpu_s"]))
        print("  onednn vs openblas, cached: %.2fx wall, %.2fx CPU (>= 1.6x: %s wall, %s CPU)" % (
            rw, rc, ok(rw >= 1.6), ok(rc >= 1.6)))
        rw, rc = p["cached_s"] / n["ours_cached_s"], p["cached_cpu_s"] / n["ours_cached_cpu_s"]
        print("  onednn vs PyTorch tuned, cached: %.2fx wall, %.2fx CPU (>= 1.8x: %s wall, %s CPU)"
              % (rw, rc, ok(rw >= 1.8), ok(rc >= 1.8)))
    # bench_forward's bound (a) is OpenBLAS's GEMMs whatever MB_GEMM says
    print("  openblas forward / the OpenBLAS GEMM bound: %.1f%% wall, %.1f%% CPU" % (
        100 * o["gemm_limit_s"] / o["ours_plain_s"],
        100 * o["gemm_limit_cpu_s"] / o["ours_plain_cpu_s"]))
if "c_vs_torch_last_logits_max_abs" in p:
    print("same function: max |logit diff| vs PyTorch %.2g" % p["c_vs_torch_last_logits_max_abs"])
PY
