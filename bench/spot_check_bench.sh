#!/usr/bin/env bash
# Cost of spot checks: greedy swarm generation through a 2-server loopback
# swarm (both serve every block, so each can verify the other) at
# --verify-rate 0, 0.05 and 0.5, plus the largest honest difference the checks
# saw with f32, f16 and bf16 hidden states on the wire (what the tolerances
# must leave room for). Prints ratios, not verdicts.
# Usage: bench/spot_check_bench.sh [ENGINE] [MODEL]   (default: stories260K)
#   N=200 tokens, THREADS=1, RUNS=3 (best of)
set -euo pipefail
cd "$(dirname "$0")/.."
ENGINE=${1:-./engine}
MODEL=${2:-../shared/models/stories260K.gguf}
N=${N:-200}
THREADS=${THREADS:-1}
RUNS=${RUNS:-3}
source scripts/procs.bash
tps() { sed -n 's/.*generated [0-9]* tokens in [0-9.]* s (\([0-9.]*\) tok\/s).*/\1/p' "$1"; }

$ENGINE dht --listen 127.0.0.1:0 >"$T/dht.out" 2>"$T/dht.err" &
PIDS+=($!)
wait_line "$T/dht.out" "others join with"
PEER=$(sed -n 's/.*others join with --initial-peers //p' "$T/dht.out")
NL=$($ENGINE info -m "$MODEL" | sed -n 's/.*layers \([0-9]*\),.*/\1/p')
for i in 1 2; do
  $ENGINE serve -m "$MODEL" --initial-peers "$PEER" --listen 127.0.0.1:0 -t "$THREADS" --blocks "0:$NL" \
    >"$T/s$i.out" 2>"$T/s$i.err" &
  PIDS+=($!)
done
for i in 1 2; do wait_line "$T/s$i.out" "serve: online"; done
gen() {  # LOG [args]
  local log=$1
  shift
  $ENGINE generate -m "$MODEL" -n "$N" --temp 0 --ids -t "$THREADS" -p "Once upon a time" --swarm \
    --initial-peers "$PEER" --verify-seed 1 --verbose "$@" >"$log.ids" 2>"$log"
}
echo "spot_check_bench: $MODEL ($NL blocks), $N tokens, 2 servers 0:$NL on loopback, best of $RUNS"
base=""
for rate in 0 0.05 0.5; do
  best=0
  for r in $(seq "$RUNS"); do
    gen "$T/g.$rate.$r" --verify-rate "$rate"
    t=$(tps "$T/g.$rate.$r")
    best=$(awk "BEGIN{print ($t > $best) ? $t : $best}")
  done
  [ -n "$base" ] || base=$best
  checks=$(sed -n 's/.*swarm: \([0-9]*\) spot checks.*/\1/p' "$T/g.$rate.1")
  printf "  --verify-rate %-5s %8s tok/s = %.3f x rate 0  (%s checks)\n" "$rate" "$best" \
    "$(awk "BEGIN{print $best / $base}")" "$checks"
done
for wire in f32 f16 bf16; do
  gen "$T/w.$wire" --verify-rate 0.5 --wire-dtype "$wire"
  worst=$(sed -n 's/.*max error \([0-9.e+-]*\).*/\1/p' "$T/w.$wire" | sort -g | tail -1)
  printf "  honest max relative error, %-4s wire: %s\n" "$wire" "$worst"
done
