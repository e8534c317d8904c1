#!/usr/bin/env bash
# run_backends.sh: training and the head sweep under each GEMM backend, in one
# run, interleaved (every round runs portable, openblas, onednn in turn; the
# medians of ROUNDS rounds are compared), wall and CPU time (getrusage, every
# thread), so that load from other jobs hits every backend alike.
#   - training: bench_train on the modadd "paper" preset (p = 113, 3,831
#     train pairs, full batch, AdamW), STEPS timed steps after 2 warm-up steps;
#     the first losses must agree across backends (same model, same data);
#   - head sweep: bench_forward's zero-ablation sweep of GPT-2-small-shaped
#     random weights (16 prompts of 32 tokens, head 0 of each layer timed and
#     multiplied by 12), restarting at the ablated layer and as full forwards
#     (last-position logits); its forward figures run at B=1, T=32 only so
#     that the sweep dominates the run.
# Every run: OMP_NUM_THREADS=2, OMP_WAIT_POLICY=passive.
#
# usage: benchmarks/perf/run_backends.sh [BUILD_DIR] [STEPS] [ROUNDS]
#   (defaults build, 20, 3; BUILD_DIR must hold Release builds of bench_train
#   and bench_forward with oneDNN)
set -euo pipefail
cd "$(dirname "$0")/../.."
build="${1:-build}"
steps="${2:-20}"
rounds="${3:-3}"
py=/usr/bin/python3
for b in bench_train bench_forward; do
  [ -x "$build/$b" ] || { echo "run_backends.sh: $build/$b not built" >&2; exit 1; }
done
work=$(mktemp -d /tmp/mb-backends-XXXXXX)
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive
echo "== load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
"$build/bench_train" --prepare "$work/train" --recipe modadd --preset paper --seed 0 >&2
$py benchmarks/perf/bench_forward_torch.py write "$work/gpt2s" >&2
: >"$work/train.jsonl"
: >"$work/sweep.jsonl"
for r in $(seq 1 "$rounds"); do
  for g in portable openblas onednn; do
    MB_GEMM=$g "$build/bench_train" --run "$work/train" --steps "$steps" --warmup 2 --threads 2 \
      | tee -a "$work/train.jsonl" >&2
    MB_GEMM=$g "$build/bench_forward" "$work/gpt2s" "$work/sweep-$g-$r.json" --batch 1 --seq 32 \
      --reps 1 --sweep-prompts 16 --sweep-len 32 --sweep-heads sample 2>/dev/null >/dev/null
    $py -c 'import json,sys; d=json.load(open(sys.argv[1])); d["gemm"]=sys.argv[2]; print(json.dumps(d))' \
      "$work/sweep-$g-$r.json" "$g" >>"$work/sweep.jsonl"
    echo "round $r $g: sweep done" >&2
  done
done
echo "== load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

$py - "$work/train.jsonl" "$work/sweep.jsonl" "$rounds" <<'PY'
import json, statistics, sys
train = [json.loads(l) for l in open(sys.argv[1])]
sweep = [json.loads(l) for l in open(sys.argv[2])]
rounds = int(sys.argv[3])
order = ("portable", "openblas", "onednn")
med = lambda xs: statistics.median(xs)
ref = [r for r in train if r["gemm"] == "portable"][0]["losses"]
print("training, modadd paper preset, %d steps, median of %d interleaved rounds, 2 threads"
      % (train[0]["steps"], rounds))
t = {}
for g in order:
    rs = [r for r in train if r["gemm"] == g]
    d = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(rs[0]["losses"], ref))
    t[g] = (med([r["seconds"] for r in rs]), med([r["cpu_seconds"] for r in rs]))
    print("  %-8s %7.3f s wall (%6.2f steps/s), %7.3f CPU-s; first losses vs portable: "
          "max rel diff %.2g" % (g, t[g][0], train[0]["steps"] / t[g][0], t[g][1], d))
for g in ("openblas", "onednn"):
    print("  speed-up %-8s vs portable: %.2fx wall, %.2fx CPU"
          % (g, t["portable"][0] / t[g][0], t["portable"][1] / t[g][1]))
print("  speed-up onednn vs openblas: %.2fx wall, %.2fx CPU"
      % (t["openblas"][0] / t["onednn"][0], t["openblas"][1] / t["onednn"][1]))
print("head sweep (GPT-2-small shape, 144 heads from 12 timed, 16 prompts x 32 tokens), "
      "median of %d interleaved rounds" % rounds)
s = {}
for g in order:
    rs = [r for r in sweep if r["gemm"] == g]
    s[g] = {k: (med([r["sweep_%s_s" % k] for r in rs]), med([r["sweep_%s_cpu_s" % k] for r in rs]))
            for k in ("restart_last", "full_last")}
    print("  %-8s restart at the ablated layer %7.2f s (%7.2f CPU-s); full forwards %7.2f s "
          "(%7.2f CPU-s)" % (g, s[g]["restart_last"][0], s[g]["restart_last"][1],
                             s[g]["full_last"][0], s[g]["full_last"][1]))
for k, name in (("restart_last", "restart"), ("full_last", "full forwards")):
    for a, b in (("portable", "openblas"), ("portable", "onednn"), ("openblas", "onednn")):
        print("  %-13s speed-up %-8s vs %-8s: %.2fx wall, %.2fx CPU"
              % (name, b, a, s[a][k][0] / s[b][k][0], s[a][k][1] / s[b][k][1]))
PY
