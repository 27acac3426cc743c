#!/usr/bin/env bash
# Swarm inference benchmark on 127.0.0.1: greedy generation through chains of
# 1, 2 and 3 servers against local generation of the same model, and the time
# from a server's death to the client's recovery. Prints ratios, not verdicts.
# Usage: bench/swarm_bench.sh [ENGINE] [MODEL]
#   default MODEL: a dim-2048, 8-block synthetic f16 model made by init-model
#   N=32 tokens, THREADS=2 (local and each server; one server computes at a time)
# Network namespaces / netem: not available on these machines (DESIGN.md), so
# the WAN part is skipped; the loopback numbers are what this prints.
set -euo pipefail
cd "$(dirname "$0")/.."
ENGINE=${1:-./engine}
MODEL=${2:-}
N=${N:-32}
THREADS=${THREADS:-2}
source scripts/procs.bash
if [ -z "$MODEL" ]; then
  MODEL=build/bench/synthetic-d2048-l8.gguf
  mkdir -p build/bench
  [ -f "$MODEL" ] || $ENGINE init-model --dim 2048 --ffn 5632 --layers 8 --heads 32 --kv-heads 4 --vocab 32000 \
    --type f16 --seed 1 -o "$MODEL" >/dev/null 2>&1
fi
NL=$($ENGINE info -m "$MODEL" | sed -n 's/.*layers \([0-9]*\),.*/\1/p')
tps() { sed -n 's/.*generated [0-9]* tokens in [0-9.]* s (\([0-9.]*\) tok\/s).*/\1/p' "$1"; }

$ENGINE dht --listen 127.0.0.1:0 >"$T/dht.out" 2>"$T/dht.err" &
PIDS+=($!)
wait_line "$T/dht.out" "others join with"
PEER=$(sed -n 's/.*others join with --initial-peers //p' "$T/dht.out")
SWARM_ID=0
start_servers() {  # SPAN... ; each chain gets its own swarm name so chains do not mix
  SWARM_ID=$((SWARM_ID + 1))
  local i=0
  SRV=()
  for span in "$@"; do
    i=$((i + 1))
    $ENGINE serve -m "$MODEL" --initial-peers "$PEER" --listen 127.0.0.1:0 -t "$THREADS" --blocks "$span" \
      --model-name "bench$SWARM_ID" >"$T/s$SWARM_ID.$i.out" 2>"$T/s$SWARM_ID.$i.err" &
    SRV+=($!)
    PIDS+=($!)
  done
  for j in $(seq "$i"); do wait_line "$T/s$SWARM_ID.$j.out" "serve: online"; done
}
stop_servers() {
  for p in "${SRV[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${SRV[@]}"; do wait "$p" 2>/dev/null || true; done
}
swarm_gen() {  # LOG [extra args]
  local log=$1
  shift
  $ENGINE generate -m "$MODEL" -n "$N" --temp 0 --ids -t "$THREADS" --swarm --initial-peers "$PEER" \
    --model-name "bench$SWARM_ID" "$@" >"$log.ids" 2>"$log"
}

$ENGINE generate -m "$MODEL" -n "$N" --temp 0 --ids -t "$THREADS" >"$T/local.ids" 2>"$T/local.err"
LOCAL=$(tps "$T/local.err")
echo "swarm_bench: model $MODEL ($NL blocks), $N tokens, $THREADS threads, loopback"
printf "  %-28s %8s tok/s\n" "local" "$LOCAL"
a=$((NL / 3)); b=$((2 * NL / 3)); h=$((NL / 2))
for chain in "0:$NL" "0:$h $h:$NL" "0:$a $a:$b $b:$NL"; do
  start_servers $chain
  swarm_gen "$T/chain.err"
  r=$(tps "$T/chain.err")
  same=$(cmp -s "$T/chain.err.ids" "$T/local.ids" && echo "same ids" || echo "DIFFERENT ids")
  printf "  %-28s %8s tok/s  = %.3f x local  (%s)\n" "chain $chain" "$r" "$(awk "BEGIN{print $r / $LOCAL}")" "$same"
  stop_servers
done

# Death to next token: two spans plus a spare for the first; kill the one in use halfway.
start_servers "0:$h" "$h:$NL" "0:$h"
swarm_gen "$T/kill.err" --verbose &
G=$!
PIDS+=($G)
wait_line "$T/kill.err" "route for blocks"
used=$(sed -n 's/.*route for blocks [0-9:]*: 0:[0-9]*@\([0-9.:]*\).*/\1/p' "$T/kill.err" | head -1)
sleep "$(awk "BEGIN{print $N / 2 / ($LOCAL > 0 ? $LOCAL : 1)}")"
for j in 1 3; do
  if grep -q "listening on $used" "$T/s$SWARM_ID.$j.out"; then kill -9 "${SRV[$((j - 1))]}"; fi
done
wait "$G" || true
rec=$(sed -n 's/.*last recovery \([0-9.]*\) s.*/\1/p' "$T/kill.err")
replayed=$(sed -n 's/.*(replayed \([0-9]*\) positions).*/\1/p' "$T/kill.err" | tail -1)
same=$(cmp -s "$T/kill.err.ids" "$T/local.ids" && echo "same ids" || echo "DIFFERENT ids")
echo "  server killed mid-generation: recovery (failure -> replacement ready, ${replayed:-0} positions replayed) ${rec:-?} s; $(tps "$T/kill.err") tok/s overall ($same)"
stop_servers
