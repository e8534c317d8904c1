#!/usr/bin/env bash
# bench_sae.sh: SAE training tokens/s of mechbench (bench_sae) against the same TopK SAE,
# data order and optimizer in PyTorch (bench_sae_torch.py), 2 threads each, as installed
# and tuned (OMP_WAIT_POLICY=passive and large malloc thresholds, ARCHITECTURE.md), the
# runs alternating for ROUNDS rounds; prints every run's JSON line.
#
# usage: benchmarks/perf/bench_sae.sh [BUILD_DIR] [STEPS] [ROUNDS] [D_IN] [WIDTH]
#   (defaults build, 10, 2, 512, 4096; k 32, batch 4096; rows: N(0, 1) float32)
set -euo pipefail
cd "$(dirname "$0")/../.."
build="${1:-build}"
steps="${2:-10}"
rounds="${3:-2}"
d_in="${4:-512}"
width="${5:-4096}"
py=/usr/bin/python3
[ -x "$build/bench_sae" ] || { echo "bench_sae.sh: $build/bench_sae not built" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
$py -c "import numpy as np; np.save('$work/rows.npy', np.random.default_rng(0).standard_normal((16384, $d_in), dtype=np.float32))"
export OMP_NUM_THREADS=2
tuned=(env OMP_WAIT_POLICY=passive MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736
       MALLOC_TOP_PAD_=1073741824)
args=(--data "$work/rows.npy" --width "$width" --k 32 --batch 4096 --steps "$steps" --threads 2)
for r in $(seq 1 "$rounds"); do
  "$build/bench_sae" --arch topk "${args[@]}"
  "${tuned[@]}" "$build/bench_sae" --arch topk "${args[@]}" | sed 's/"mechbench"/"mechbench tuned"/'
  $py benchmarks/perf/bench_sae_torch.py "${args[@]}"
  "${tuned[@]}" $py benchmarks/perf/bench_sae_torch.py "${args[@]}" | sed 's/"torch"/"torch tuned"/'
done
