# Sourced (after cd to the repository root) by the scripts that start servers:
# the demo and the swarm benchmarks. Gives a temp folder $T, records every
# started process in PIDS (PIDS+=($!)) and kills and reaps them on exit, and
# wait_line FILE PATTERN [TRIES]: polls every 0.1 s (600 tries by default),
# exits the script with a message when PATTERN never shows up.
T=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$T"
}
trap cleanup EXIT
wait_line() {
  for _ in $(seq "${3:-600}"); do grep -q -- "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "$(basename "$0"): timed out waiting for '$2' in $1" >&2
  exit 1
}
