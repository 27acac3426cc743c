#!/usr/bin/env bash
# Private swarm against open swarm, end to end: greedy generation through a
# 2-server chain on 127.0.0.1, one chain with --swarm-key and one without,
# alternating rounds in one run. Prints tokens/s of each and the ratio (goal:
# keyed >= 0.95x open). Prefill sends the whole prompt's hidden states at once,
# so a long prompt (-p) weighs the sealed-record throughput in too.
# Usage: bench/swarm_key_bench.sh [ENGINE] [MODEL]
#   default MODEL: a dim-1024, 4-block synthetic f16 model made by init-model
#   N=32 tokens, ROUNDS=5, THREADS=1 (one core per server on a 2-core machine)
set -euo pipefail
cd "$(dirname "$0")/.."
ENGINE=${1:-./engine}
MODEL=${2:-}
N=${N:-32}
ROUNDS=${ROUNDS:-5}
THREADS=${THREADS:-1}
source scripts/procs.bash
if [ -z "$MODEL" ]; then
  MODEL=build/bench/synthetic-d1024-l4.gguf
  mkdir -p build/bench
  [ -f "$MODEL" ] || $ENGINE init-model --dim 1024 --ffn 2816 --layers 4 --heads 16 --kv-heads 4 --vocab 32000 \
    --type f16 --seed 1 -o "$MODEL" >/dev/null 2>&1
fi
NL=$($ENGINE info -m "$MODEL" | sed -n 's/.*layers \([0-9]*\),.*/\1/p')
H=$((NL / 2))
tps() { sed -n 's/.*generated [0-9]* tokens in [0-9.]* s (\([0-9.]*\) tok\/s).*/\1/p' "$1"; }
$ENGINE swarm-key -o "$T/swarm.key" >/dev/null

declare -A PEER
start_swarm() {  # NAME [security flags...]
  local name=$1
  shift
  $ENGINE dht --listen 127.0.0.1:0 "$@" >"$T/$name.dht.out" 2>"$T/$name.dht.err" &
  PIDS+=($!)
  wait_line "$T/$name.dht.out" "others join with"
  PEER[$name]=$(sed -n 's/.*others join with --initial-peers //p' "$T/$name.dht.out")
  local i=0
  for span in "0:$H" "$H:$NL"; do
    i=$((i + 1))
    $ENGINE serve -m "$MODEL" --initial-peers "${PEER[$name]}" --listen 127.0.0.1:0 -t "$THREADS" --blocks "$span" \
      "$@" >"$T/$name.$i.out" 2>"$T/$name.$i.err" &
    PIDS+=($!)
  done
  for j in 1 2; do wait_line "$T/$name.$j.out" "serve: online"; done
}
gen() {  # NAME LOG [security flags...]
  local name=$1 log=$2
  shift 2
  $ENGINE generate -m "$MODEL" -p "${PROMPT:-Once upon a time}" -n "$N" --temp 0 --ids -t "$THREADS" --swarm \
    --initial-peers "${PEER[$name]}" --verify-rate 0 "$@" >"$log.ids" 2>"$log"
}

start_swarm open
start_swarm keyed --swarm-key "$T/swarm.key"
echo "swarm_key_bench: model $MODEL ($NL blocks, 2 servers), $N tokens, $THREADS thread(s) each, loopback, $ROUNDS rounds"
open_all=() keyed_all=()
for r in $(seq "$ROUNDS"); do
  gen open "$T/open.$r"
  gen keyed "$T/keyed.$r" --swarm-key "$T/swarm.key"
  cmp -s "$T/open.$r.ids" "$T/keyed.$r.ids" || echo "  round $r: DIFFERENT ids open vs keyed"
  open_all+=("$(tps "$T/open.$r")") keyed_all+=("$(tps "$T/keyed.$r")")
  printf "  round %d: open %8s tok/s   keyed %8s tok/s\n" "$r" "${open_all[-1]}" "${keyed_all[-1]}"
done
median() { printf "%s\n" "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
mo=$(median "${open_all[@]}") mk=$(median "${keyed_all[@]}")
printf "  median: open %s tok/s, keyed %s tok/s, keyed / open %.3f\n" "$mo" "$mk" "$(awk "BEGIN{print $mk / $mo}")"
