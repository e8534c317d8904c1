#!/usr/bin/env bash
# bench_train.sh: training steps per second of the modadd "paper" preset
# (Nanda et al. 2023: p = 113, 30% = 3,831 train pairs, full batch, 1 layer, AdamW)
# in mechbench against the same model and optimizer in PyTorch, from the same
# initial weights on the same pairs in the same order, 2 threads each. The
# runs alternate (mechbench, torch as installed, torch tuned) for ROUNDS rounds
# and the medians are compared, so machine drift hits both sides alike.
#
# usage: benchmarks/perf/bench_train.sh [BUILD_DIR] [STEPS] [ROUNDS]
#   (defaults build, 30, 3; BUILD_DIR must hold a Release build of bench_train)
# "torch tuned" is PyTorch with OMP_WAIT_POLICY=passive, large malloc
# thresholds (ARCHITECTURE.md, performance notes) and AdamW(foreach=True).
set -euo pipefail
cd "$(dirname "$0")/../.."
build="${1:-build}"
steps="${2:-30}"
rounds="${3:-3}"
py=/usr/bin/python3
bench="$build/bench_train"
[ -x "$bench" ] || { echo "bench_train.sh: $bench not built" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bench" --prepare "$work" --recipe modadd --preset paper --seed 0 >&2

export OMP_NUM_THREADS=2
tuned_env=(env OMP_WAIT_POLICY=passive MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736
           MALLOC_TOP_PAD_=1073741824)
: >"$work/results.jsonl"
for r in $(seq 1 "$rounds"); do
  "$bench" --run "$work" --steps "$steps" --warmup 2 --threads 2 | tee -a "$work/results.jsonl" >&2
  $py benchmarks/perf/bench_train_torch.py --run "$work" --steps "$steps" --warmup 2 --threads 2 \
    | tee -a "$work/results.jsonl" >&2
  "${tuned_env[@]}" $py benchmarks/perf/bench_train_torch.py --run "$work" --steps "$steps" \
    --warmup 2 --threads 2 --foreach | tee -a "$work/results.jsonl" >&2
done

$py - "$work/results.jsonl" "$(nproc)" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault(r["impl"], []).append(r)
med = {k: statistics.median(x["steps_per_s"] for x in v) for k, v in by.items()}
ours = med["mechbench"]
print("modadd paper preset (p = 113, 3831 train pairs, full batch), %d steps x %d rounds, 2 threads,"
      " %s cores:%s" % (rows[0]["steps"], len(by["mechbench"]), sys.argv[2], sys.argv[3]))
for k in ("mechbench", "torch", "torch foreach"):
    if k in med:
        print("  %-14s %8.2f steps/s (median; runs: %s)" % (
            k, med[k], ", ".join("%.2f" % x["steps_per_s"] for x in by[k])))
# Same model and optimizer: the first losses agree up to float32 rounding.
ref = by["mechbench"][0]["losses"]
for k in ("torch", "torch foreach"):
    if k in by:
        got = by[k][0]["losses"]
        d = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(got, ref))
        print("  losses of the first %d steps, %s vs mechbench: max relative diff %.2g"
              % (len(ref), k, d))
        if d > 1e-3:
            print("bench_train: the two sides do not train the same model", file=sys.stderr)
            sys.exit(1)
for k in ("torch", "torch foreach"):
    if k in med:
        print("  ratio mechbench / %-14s %.2fx" % (k, ours / med[k]))
EOF
