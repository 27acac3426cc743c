#!/usr/bin/env bash
# The GPU check, in one go, for a machine with an NVIDIA GPU (written for an H200,
# sm_90): builds with CUDA in its own build directory, runs every kernel test
# (tests/gpu, label `gpu`) and the CUDA benchmark, and prints a short table.
# Finishes in a few minutes (build ~2-4 min on 16 cores, tests < 1 min, bench < 1 min).
#
#   tests/gpu/run.sh [BUILD_DIR]        (default build-gpu; CUDA_ARCH=90 by default)
#
# Exit status: 0 when every GPU test passed, 1 otherwise (the bench still runs).
set -uo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build-gpu}
arch=${CUDA_ARCH:-90}
jobs=${JOBS:-16}
log=$build/gpu-run
t0=$(date +%s)

echo "== device"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
else
  echo "nvidia-smi not found"
fi

echo "== deps (installs only what is missing)"
make deps >/dev/null 2>&1 || echo "make deps failed (continuing: the packages may already be there)"

echo "== configure + build ($build, sm_$arch, -j$jobs)"
export PATH=/usr/local/cuda/bin:$PATH
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DENGINE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" >/dev/null ||
  { echo "configure FAILED"; exit 1; }
mkdir -p "$log"
if ! cmake --build "$build" -j "$jobs" --target engine_tests_gpu cuda_bench >"$log/build.txt" 2>&1; then
  grep -E "error|Error" "$log/build.txt" | head -40
  echo "build FAILED (full log: $log/build.txt)"
  exit 1
fi
t1=$(date +%s)
echo "built in $((t1 - t0)) s"

echo "== kernel tests (engine_tests_gpu)"
ENGINE_CUDA_SYNC=1 timeout 300 "$build/engine_tests_gpu" --gtest_color=no >"$log/tests.txt" 2>&1
test_rc=$?
grep -E "^\[ *(OK|FAILED|SKIPPED) *\]|seed|\[gpu\]" "$log/tests.txt" | sed 's/^/  /'
grep -B2 -A12 -E "Failure|error:" "$log/tests.txt" | head -120
t2=$(date +%s)

echo "== benchmark (cuda_bench)"
timeout 300 "$build/cuda_bench" 2>&1 | tee "$log/bench.txt"
bench_rc=${PIPESTATUS[0]}
t3=$(date +%s)

pass=$(grep -c "^\[       OK \]" "$log/tests.txt")
fail=$(grep -c "^\[  FAILED  \] [A-Za-z0-9_]*\.[A-Za-z0-9_]* (" "$log/tests.txt")
skip=$(grep -c "^\[  SKIPPED \] [A-Za-z0-9_]*\.[A-Za-z0-9_]* (" "$log/tests.txt")
echo
echo "== summary"
printf "%-28s %s\n" "device" "$(grep -m1 -E '^device:|skipped:' "$log/bench.txt" | sed 's/^device: //')"
printf "%-28s %s\n" "gpu tests" "$pass passed, $fail failed, $skip skipped (exit $test_rc)"
printf "%-28s %s\n" "copy bandwidth" "$(grep -m1 '^copy bandwidth' "$log/bench.txt" | sed 's/.*: //')"
grep -E "^[0-9]+x[0-9]+ " "$log/bench.txt" | awk '{printf "%-28s spqr %s us, f16 %s us, %s faster, %s of copy bw\n", "gemv " $1, $2, $3, $4, $6}'
grep -E "^(spqr3|f16) " "$log/bench.txt" | awk '{printf "%-28s %s ms/token, prefill %s tok/s\n", "dim-2048 decode " $1, $2, $6}'
printf "%-28s %s\n" "times (s)" "build $((t1 - t0)), tests $((t2 - t1)), bench $((t3 - t2))"
printf "%-28s %s\n" "bench exit" "$bench_rc"
[ "$test_rc" -eq 0 ] && [ "$pass" -gt 0 ] && [ "$skip" -eq 0 ]
