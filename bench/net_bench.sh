#!/usr/bin/env bash
# Network benchmarks (bench/net_bench.cpp): RPC round trips, a 16 MiB tensor
# stream vs. a plain TCP copy, and a 100-process DHT on 127.0.0.1.
# Usage: bench/net_bench.sh [BUILD_DIR] [net_bench args...]
# Uses BUILD_DIR/net_bench if the build made one, else compiles it against
# BUILD_DIR's static libraries.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
shift || true
bin="$build/net_bench"
if [ ! -x "$bin" ]; then
  [ -f "$build/libengine_net.a" ] || { echo "net_bench: build first (make build)" >&2; exit 1; }
  g++ -std=c++20 -O3 -DMSGPACK_NO_BOOST -I. bench/net_bench.cpp "$build/libengine_net.a" "$build/libengine_core.a" \
    -luv -lxxhash -lsodium -lpthread -o "$bin"
fi
"$bin" "$@"
