#!/usr/bin/env bash
# run_edit.sh: ROME and MEMIT in mechbench (bench_edit) against the same
# edits in PyTorch (bench_edit_torch.py, the golden tests' reference
# implementation) on the same random GPT-2-style model (L 4, D 128, M 512,
# V 512), corpus, requests and prefixes, 2 threads each, OMP_WAIT_POLICY=passive
# for both (a shared machine). Prints each side's JSON line; compare rome_s
# (one edit, C precomputed), memit_s (E edits) and stats_tokens_per_s.
#
# usage: benchmarks/perf/run_edit.sh [BUILD_DIR] [EDITS]   (defaults build, 100)
set -euo pipefail
cd "$(dirname "$0")/../.."
build="${1:-build}"
edits="${2:-100}"
bench="$build/bench_edit"
[ -x "$bench" ] || { echo "run_edit.sh: $bench not built" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bench" --prepare "$work"
export OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive
"$bench" --run "$work" --edits "$edits" --threads 2
/usr/bin/python3 benchmarks/perf/bench_edit_torch.py "$work" --edits "$edits" --threads 2
