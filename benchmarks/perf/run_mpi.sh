#!/usr/bin/env bash
# benchmarks/perf/run_mpi.sh [BIN] [CHECKPOINTS]: the canonical suite and a
# drift series of CHECKPOINTS (default 26) checkpoints of the zoo's induction
# model (copies of baselines/models/induction with steps 0, 100, ...: a
# checkpoint's cost depends on its shapes, not its weights) run three ways on
# this machine, in the same run:
#   1x1  one process, 1 OpenMP thread
#   2x1  mpirun -n 2, 1 thread each
#   1x2  one process, 2 OpenMP threads
# Prints wall and CPU seconds of each, the speed-up and parallel efficiency
# over 1x1 (T1x1 / (2 T)), the per-item and per-checkpoint costs, and checks
# that every database holds the same bits (item values and aggregates,
# float.hex). A shared machine makes the wall times noisy: read CPU seconds.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=$(realpath "${1:-build/mechbench}")
K=${2:-26}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_WAIT_POLICY=passive
mpi=(mpirun --oversubscribe --bind-to none)
[ "$(id -u)" = 0 ] && mpi+=(--allow-run-as-root)

for k in $(seq 0 $((K - 1))); do
  d="$work/series/step$((k * 100))"
  mkdir -p "$d"
  cp baselines/models/induction/* "$d/"
  echo "{\"step\": $((k * 100))}" > "$d/training_state.json"
done

# timed LABEL cmd...: wall and CPU (user + sys of the process tree) seconds
timed() {
  local label=$1; shift
  /usr/bin/time -f "%e %U %S" -o "$work/t" "$@" >/dev/null
  read -r wall usr sys < "$work/t"
  printf '%-28s wall %7.2f s   cpu %7.2f s\n' "$label" "$wall" "$(echo "$usr + $sys" | bc)"
  echo "$label $wall $(echo "$usr + $sys" | bc)" >> "$work/times"
}

dump() {
  /usr/bin/python3 - "$1" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
for row in db.execute("SELECT run_id, entry, metric, ordinal, value FROM item_values"
                      " ORDER BY run_id, entry, metric, ordinal"):
    print(*row[:4], row[4].hex())
for row in db.execute("SELECT run_id, entry, metric, n, mean, se, ci_low, ci_high, method"
                      " FROM aggregates ORDER BY run_id, entry, ordinal"):
    print(*(v.hex() if isinstance(v, float) else v for v in row))
PY
}

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
for what in suite drift; do
  for cfg in 1x1 2x1 1x2; do
    ranks=${cfg%x*}; threads=${cfg#*x}
    db="$work/$what-$cfg.db"
    if [ $what = suite ]; then
      args=(run --suite benchmarks/canonical.json --db "$db" --threads "$threads" --quiet)
    else
      args=(drift --suite benchmarks/induction-drift.json --series "$work/series" --db "$db"
            --threads "$threads" --quiet)
    fi
    if [ "$ranks" = 1 ]; then
      timed "$what $cfg" "$bin" "${args[@]}"
    else
      timed "$what $cfg" "${mpi[@]}" -n "$ranks" "$bin" "${args[@]}"
    fi
    dump "$db" > "$db.txt"
  done
  for cfg in 2x1 1x2; do
    cmp -s "$work/$what-1x1.db.txt" "$work/$what-$cfg.db.txt" ||
      { echo "$what $cfg: NOT the bits of 1x1"; exit 1; }
  done
  echo "$what: 1x1, 2x1 and 1x2 store the same bits ($(wc -l < "$work/$what-1x1.db.txt") values and aggregates)"
done
/usr/bin/python3 - "$work/times" "$work/suite-1x1.db" "$work/drift-1x1.db" "$K" <<'PY'
import sqlite3, sys
t = {}
for line in open(sys.argv[1]):
    what, cfg, wall, cpu = line.split()
    t[(what, cfg)] = (float(wall), float(cpu))
for what in ("suite", "drift"):
    w1 = t[(what, "1x1")][0]
    for cfg in ("2x1", "1x2"):
        w = t[(what, cfg)][0]
        print(f"{what} {cfg}: speed-up {w1 / w:.2f}x over 1x1, parallel efficiency {w1 / (2 * w):.0%}")
db = sqlite3.connect(sys.argv[2])
for entry, n, s in db.execute("SELECT entry, n_items, seconds FROM entries ORDER BY ordinal"):
    print(f"per item (1 thread): {entry} {s / n * 1e3:.2f} ms ({n} items, {s:.2f} s)")
db = sqlite3.connect(sys.argv[3])
n, s = db.execute("SELECT count(*), sum(wall_seconds) FROM runs").fetchone()
print(f"per checkpoint (1 thread, load + items + store): {s / n:.2f} s over {n} checkpoints; "
      f"drift 1x1 wall {t[('drift', '1x1')][0] / int(sys.argv[4]):.2f} s a checkpoint")
PY
