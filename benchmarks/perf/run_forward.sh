#!/usr/bin/env bash
# run_forward.sh: the forward benchmark in one go (benchmarks/perf/README.md).
#
# Writes GPT-2-small-shaped random weights once into a temp dir (~500 MB,
# removed at exit), then in the same run times: (a) the GEMMs of one forward
# alone through OpenBLAS, (b) our forward, plain and with every hook cached,
# its peak RSS, the 144-head ablation sweep with and without restarting at the
# ablated layer (bench_forward), and (c) the same weights through an equivalent
# PyTorch module on 2 threads, as installed and tuned, plain and with every hook
# cached (bench_forward_torch.py). Prints every figure and ratio, from wall
# time (the real figure on a quiet machine) and from process CPU time (a proxy
# that other jobs on shared cores distort much less; the C side and tuned
# PyTorch wait passively, so their CPU time is work, not spinning).
#
# Usage: benchmarks/perf/run_forward.sh [--reps N] [--sweep-heads sample|all|none]
# Env:   MB_BUILD_DIR (default build; built in Release if bench_forward is missing)
set -euo pipefail
cd "$(dirname "$0")/../.."

reps=5
sweep=sample
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) reps="$2"; shift 2 ;;
    --sweep-heads) sweep="$2"; shift 2 ;;
    *) echo "usage: $0 [--reps N] [--sweep-heads sample|all|none]" >&2; exit 2 ;;
  esac
done

build="${MB_BUILD_DIR:-build}"
if [ ! -x "$build/bench_forward" ]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build" -j2 --target bench_forward >/dev/null
fi
py=/usr/bin/python3
tmp=$(mktemp -d /tmp/mb-bench-forward-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

echo "== writing GPT-2-small-shaped random weights to $tmp/gpt2s" >&2
$py benchmarks/perf/bench_forward_torch.py write "$tmp/gpt2s"

echo "== C: GEMM-bound limit, our forward, RSS, sweep" >&2
OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive "$build/bench_forward" "$tmp/gpt2s" "$tmp/c.json" --reps "$reps" \
  --sweep-heads "$sweep"

echo "== PyTorch as installed (2 threads)" >&2
OMP_NUM_THREADS=2 $py benchmarks/perf/bench_forward_torch.py bench "$tmp/gpt2s" \
  "$tmp/torch.json" --reps "$reps"

echo "== PyTorch tuned (passive OpenMP waits, no malloc trimming, OpenMP OpenBLAS)" >&2
OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive MALLOC_MMAP_MAX_=0 \
  MALLOC_TRIM_THRESHOLD_=68719476736 MALLOC_TOP_PAD_=1073741824 \
  LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp \
  $py benchmarks/perf/bench_forward_torch.py bench "$tmp/gpt2s" "$tmp/torch_tuned.json" \
  --reps "$reps"

$py benchmarks/perf/summarize_forward.py "$tmp"
