#!/usr/bin/env bash
# Benchmarks of SWARM pipeline training (engine train --swarm --stages), each a ratio
# measured in this run on this machine:
#   1. samples/s of 2 stages x 2 peers + 2 trainers on loopback against one process
#      (same model, same target batch, same seed; the swarm's 6 processes x 1 thread
#      share the cores the process uses with THREADS threads), and the bytes per
#      sample the activations and their gradients take on the wire, per dtype;
#   2. the same swarm with every process behind bench/delay_proxy.py (RTT_MS round
#      trip, RATE Mbit/s per link), announcing the proxy's address;
#   3. rebalancing: 5 stage peers, 4 on stage 0 and one 6x slow (--throttle) on
#      stage 1, with and without --rebalance-period: pipeline samples/s.
# Samples/s come from the first trainer's CSV (samples and elapsed time from its
# first step to its last), so start-up is not counted.
# Usage: bench/train_pipeline.sh [ENGINE]   (PARTS="1 2 3" to pick)
set -euo pipefail
cd "$(dirname "$0")/.."
ENGINE=${1:-./engine}
THREADS=${THREADS:-2}
PARTS=${PARTS:-"1 2 3"}
RTT_MS=${RTT_MS:-50}
RATE=${RATE:-100}
CORPUS=${CORPUS:-/usr/share/games/fortunes/computers}
source scripts/procs.bash
[ -f "$CORPUS" ] || { echo "train_pipeline: $CORPUS not found (apt-get install fortunes)" >&2; exit 1; }
has() { [[ " $PARTS " == *" $1 "* ]]; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# rate CSV: samples/s between the first and the last step row.
rate() {
  awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) { if ($i == "samples") s = i; if ($i == "elapsed_s") e = i }; next }
    $e != "" && $3 > 0 { if (!n++) { s0 = $s; e0 = $e } s1 = $s; e1 = $e }
    END { if (e1 > e0) printf "%.2f", (s1 - s0) / (e1 - e0); else print "nan" }' "$1"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

$ENGINE dht --listen 127.0.0.1:0 >"$T/dht.out" 2>"$T/dht.err" &
PIDS+=($!)
wait_line "$T/dht.out" "others join with"
DHT=$(sed -n 's/.*others join with --initial-peers //p' "$T/dht.out")

MODEL="--dim 128 --layers 4 --heads 4 --seqlen 64 --lr 2e-3 --seed 3 --eval-every 0 --eval-windows 8"
STEPS=${STEPS:-16}
TARGET=${TARGET:-32}
SWARM="--swarm --stages 2 --initial-peers $DHT --matchmaking-time 0.3 --progress-period 0.1 --averaging-timeout 30"
# pipeline_run TAG WIRE [per-process listen args in ARGS_<name>]: 2 x 2 + 2; prints "rate bytes_per_sample".
pipeline_run() {
  local tag=$1 wire=$2 pids=() n
  for n in s0a s0b s1a s1b; do
    local v="ARGS_$n"
    $ENGINE train $MODEL $SWARM --run "$tag" --steps "$STEPS" --target-batch "$TARGET" --stage "${n:1:1}" \
      --rebalance-period 0 --wire-dtype "$wire" -t 1 ${!v:-} 2>"$T/$tag-$n.err" &
    pids+=($!)
    PIDS+=($!)
  done
  for n in t1 t2; do
    local v="ARGS_$n"
    $ENGINE train $MODEL $SWARM --run "$tag" --steps "$STEPS" --target-batch "$TARGET" --trainer --data "$CORPUS" \
      --batch 4 --wire-dtype "$wire" -t 1 --log "$T/$tag-$n.csv" ${!v:-} 2>"$T/$tag-$n.err" &
    pids+=($!)
    PIDS+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  local bytes samples
  bytes=$(sed -n 's/.*activations \([0-9.]*\) MB sent, \([0-9.]*\) MB received.*/\1 \2/p' "$T/$tag-t1.err" "$T/$tag-t2.err" |
    awk '{ s += $1 + $2 } END { print s * 1e6 }')
  samples=$(awk -F, 'END { print $2 }' "$T/$tag-t1.csv")
  echo "$(rate "$T/$tag-t1.csv") $(awk -v b="$bytes" -v s="$samples" 'BEGIN { printf "%.0f", b / s }')"
}

if has 1 || has 2; then
  $ENGINE train --data "$CORPUS" $MODEL --steps "$STEPS" --batch "$TARGET" -t "$THREADS" -o "$T/single.gguf" \
    2>"$T/single.err"
  single=$(rate "$T/single.csv")
  echo "== pipeline vs one process: dim 128 x 4 layers, $STEPS steps of $TARGET samples x 64 tokens"
  printf "  %-44s %8s samples/s\n" "1 process, $THREADS threads" "$single"
fi
if has 1; then
  for wire in f32 f16 int8; do
    read -r r b <<<"$(pipeline_run "loop-$wire" "$wire")"
    printf "  %-44s %8s samples/s  ratio %s  %7d bytes/sample of activations on the wire\n" \
      "2 stages x 2 + 2 trainers, loopback, $wire" "$r" "$(ratio "$r" "$single")" "$b"
  done
  grep -h "trainer done" "$T/loop-f16-t1.err" | sed 's/^/    /'
fi
if has 2; then
  for n in s0a s0b s1a s1b t1 t2; do
    sp=$(free_port)
    pp=$(free_port)
    python3 bench/delay_proxy.py "$pp" "$sp" "$((RTT_MS / 2))" "$RATE" &
    PIDS+=($!)
    declare "ARGS_$n=--listen 127.0.0.1:$sp --announce 127.0.0.1:$pp"
  done
  sleep 0.5
  read -r r b <<<"$(pipeline_run wan f16)"
  printf "  %-44s %8s samples/s  ratio %s  %7d bytes/sample\n" "the same, f16, ${RTT_MS} ms RTT, ${RATE} Mbit/s" "$r" \
    "$(ratio "$r" "$single")" "$b"
  grep -h "trainer done" "$T/wan-t1.err" | sed 's/^/    /'
  for n in s0a s0b s1a s1b t1 t2; do unset "ARGS_$n"; done
fi
if has 3; then
  echo "== rebalancing: 5 stage peers, 4 on stage 0, one on stage 1 with --throttle 6; 2 trainers; $((STEPS * 2)) steps"
  reb_run() {  # reb_run TAG PERIOD -> samples/s
    local tag=$1 pids=() n
    for n in a b c d; do
      $ENGINE train $MODEL $SWARM --run "$tag" --steps $((STEPS * 2)) --target-batch "$TARGET" --stage 0 \
        --rebalance-period "$2" -t 1 --verbose 2>"$T/$tag-s0$n.err" &
      pids+=($!)
      PIDS+=($!)
    done
    $ENGINE train $MODEL $SWARM --run "$tag" --steps $((STEPS * 2)) --target-batch "$TARGET" --stage 1 --throttle 6 \
      --rebalance-period "$2" -t 1 2>"$T/$tag-s1.err" &
    pids+=($!)
    PIDS+=($!)
    for n in 1 2; do
      $ENGINE train $MODEL $SWARM --run "$tag" --steps $((STEPS * 2)) --target-batch "$TARGET" --trainer \
        --data "$CORPUS" --batch 4 --inflight 4 -t 1 --log "$T/$tag-t$n.csv" 2>"$T/$tag-t$n.err" &
      pids+=($!)
      PIDS+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    rate "$T/$tag-t1.csv"
  }
  off=$(reb_run reb-off 0)
  on=$(reb_run reb-on 2)
  moved=$(grep -l "moving from stage 0 to stage 1" "$T"/reb-on-s0?.err | wc -l)
  printf "  %-44s %8s samples/s\n" "without rebalancing" "$off"
  printf "  %-44s %8s samples/s  ratio %s  (%d peers moved to stage 1)\n" "with --rebalance-period 2" "$on" \
    "$(ratio "$on" "$off")" "$moved"
fi
