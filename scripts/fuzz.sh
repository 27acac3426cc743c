#!/usr/bin/env bash
# Builds every libFuzzer target (tests/fuzz/*.cpp) with clang under ASan+UBSan
# and runs each for the given number of seconds. Usage: fuzz.sh BUILD_DIR SECONDS
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-fuzz}
seconds=${2:-60}
if ! command -v clang++ >/dev/null; then
  echo "fuzz: clang++ not found; run 'make deps'" >&2
  exit 1
fi
cmake -S . -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DENGINE_FUZZ=ON -DENGINE_TESTS=OFF -DENGINE_CUDA=OFF >/dev/null
targets=$(ls tests/fuzz/*.cpp | xargs -n1 basename | sed 's/\.cpp$//')
cmake --build "$build" -j "$(nproc)" --target $targets
for t in $targets; do
  corpus="$build/corpus/$t"
  mkdir -p "$corpus"
  seeds="tests/fuzz/seeds/$t"
  echo "fuzz: $t for ${seconds}s"
  args=("$corpus")
  [ -d "$seeds" ] && args+=("$seeds")
  "$build/$t" -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 "${args[@]}" \
    2>"$build/$t.log" || { tail -50 "$build/$t.log"; echo "fuzz: $t FAILED" >&2; exit 1; }
  grep -E "stat::number_of_executed_units|Done" "$build/$t.log" | tail -2
done
echo "fuzz: all targets ran clean"
