#!/usr/bin/env bash
# run_tokenize.sh: byte-level BPE encode throughput (one thread) of mechbench
# and of the JS reference encoder (npm gpt-3-encoder, run with node) on the
# GPT-2 golden corpus, in the same run (benchmarks/perf/README.md).
# Needs the package that ci/setup caches ($MB_CACHE/npm, default
# ~/.cache/mechbench/npm).
# Usage: benchmarks/perf/run_tokenize.sh [PASSES]   (default 5; pass 1 is cold)
# Env:   MB_BUILD_DIR (default build)
set -euo pipefail
cd "$(dirname "$0")/../.."
passes="${1:-5}"
build="${MB_BUILD_DIR:-build}"
[ -f "$build/CMakeCache.txt" ] || cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target bench_tokenize -- --no-print-directory >/dev/null
fx="$build/bpe_gpt2"
/usr/bin/python3 tests/fixtures/bpe/prepare_gpt2.py --out "$fx"
pkg=$(mktemp -d)
trap 'rm -rf "$pkg"' EXIT
tar xzf "${MB_CACHE:-$HOME/.cache/mechbench}/npm/gpt-3-encoder-1.1.4.tgz" -C "$pkg"
"$build/bench_tokenize" "$fx" "$passes" | tee "$pkg/c.txt"
node benchmarks/perf/bench_tokenize_js.js "$pkg" "$fx/corpus.jsonl" "$passes" | tee "$pkg/js.txt"
awk '/warm/ { for (i = 1; i <= NF; i++) if ($i == "MB/s" && $(i+1) == "CPU") v[FILENAME] = $(i-1) }
     END { c = v[ARGV[1]]; j = v[ARGV[2]]; printf "warm CPU throughput: mechbench %.2f MB/s, js %.2f MB/s, ratio %.1fx\n", c, j, c / j }' \
  "$pkg/c.txt" "$pkg/js.txt"
