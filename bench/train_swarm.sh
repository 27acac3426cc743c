#!/usr/bin/env bash
# Benchmarks of engine train and engine train --swarm (issue 16), each a ratio
# measured in this run on this machine:
#   1. single-process training: tokens/s and MFU against the engine's own GEMM
#      (build/pretrain_bench), for a dim-256 and a dim-512 model;
#   2. the collaboration's overhead: samples/s of 3 peers on loopback against one
#      process on the same machine, same model, same target batch (3 peers × 1
#      thread against 1 process × THREADS threads: the same cores);
#   3. the same 3 peers with every peer behind bench/delay_proxy.py (RTT_MS round
#      trip, RATE Mbit/s per link), announcing the proxy's address;
#   4. averaging rounds: time and bytes for vectors the size of a dim-256 and a
#      dim-1024 model, 3 peers, each wire dtype (build/avg_bench);
#   5. Byzantine peers: 4 peers, one attacking in each --byzantine mode, final eval
#      loss with centered-clip (and sign-flip with the plain mean) against the
#      honest run.
# Usage: bench/train_swarm.sh [ENGINE]   (PARTS="1 2 3 4 5" to pick)
set -euo pipefail
cd "$(dirname "$0")/.."
ENGINE=${1:-./engine}
THREADS=${THREADS:-2}
PARTS=${PARTS:-"1 2 3 4 5"}
RTT_MS=${RTT_MS:-50}
RATE=${RATE:-100}
CORPUS=${CORPUS:-/usr/share/games/fortunes/computers}
source scripts/procs.bash
[ -f "$CORPUS" ] || { echo "train_swarm: $CORPUS not found (apt-get install fortunes)" >&2; exit 1; }
has() { [[ " $PARTS " == *" $1 "* ]]; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
col() { awk -F, -v n="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == n) c = i; next } c && $c != "" { print $c }' "$1"; }
sum_col() { col "$1" "$2" | awk '{ s += $1 } END { print s + 0 }'; }

if has 1; then
  echo "== 1. single-process training step: tokens/s and MFU (6 x params x tokens/s / the engine's F32 GEMM)"
  ./build/pretrain_bench --dim 256 --layers 4 --heads 8 --batch 8 --seqlen 128 -t "$THREADS" -r 3
  ./build/pretrain_bench --dim 512 --layers 4 --heads 8 --batch 8 --seqlen 128 -t "$THREADS" -r 2
fi

$ENGINE dht --listen 127.0.0.1:0 >"$T/dht.out" 2>"$T/dht.err" &
PIDS+=($!)
wait_line "$T/dht.out" "others join with"
DHT=$(sed -n 's/.*others join with --initial-peers //p' "$T/dht.out")

MODEL="--dim 128 --layers 4 --heads 4 --seqlen 128 --lr 2e-3 --seed 3 --eval-every 0 --eval-windows 8"
STEPS=${STEPS:-12}
TARGET=${TARGET:-48}
SWARM="--swarm --initial-peers $DHT --matchmaking-time 0.3 --progress-period 0.3 --averaging-timeout 30"
# swarm_run TAG [per-peer args via ARGS_<i>]: 3 peers, prints samples/s of the run.
swarm_run() {
  local tag=$1 pids=() i t0 t1
  t0=$(now)
  for i in 1 2 3; do
    local extra_var="ARGS_$i"
    $ENGINE train --data "$CORPUS" $MODEL $SWARM --run "$tag" --steps "$STEPS" --batch 4 --target-batch "$TARGET" \
      -t 1 ${!extra_var:-} -o "$T/$tag$i.gguf" 2>"$T/$tag$i.err" &
    pids+=($!)
    PIDS+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  t1=$(now)
  local samples
  samples=$(sum_col "$T/${tag}1.csv" group_samples)
  awk -v s="$samples" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f %d %.1f\n", s / (b - a), s, b - a }'
}

if has 2 || has 3; then
  t0=$(now)
  $ENGINE train --data "$CORPUS" $MODEL --steps "$STEPS" --batch "$TARGET" -t "$THREADS" -o "$T/single.gguf" \
    2>"$T/single.err"
  t1=$(now)
  single=$(awk -v s=$((STEPS * TARGET)) -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", s / (b - a) }')
  echo "== 2. collaboration overhead: model dim 128 x 4 layers, $STEPS steps of >= $TARGET samples x 128 tokens"
  printf "  %-34s %8s samples/s  (%d samples in %.1f s)\n" "1 process, $THREADS threads" "$single" $((STEPS * TARGET)) \
    "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"
fi
if has 2; then
  read -r rate samples secs <<<"$(swarm_run loop)"
  printf "  %-34s %8s samples/s  (%d samples in %.1f s)  ratio %.2f\n" "3 peers x 1 thread, loopback" "$rate" \
    "$samples" "$secs" "$(awk -v a="$rate" -v b="$single" 'BEGIN { print a / b }')"
  grep -h "swarm: step" "$T/loop1.err" | tail -1 | sed 's/^/    /' || true
  echo "    per step (peer 1): matchmaking $(col "$T/loop1.csv" matchmaking_s | awk '{ s += $1 } END { printf "%.2f", s / NR }') s, all-reduce $(col "$T/loop1.csv" allreduce_s | awk '{ s += $1 } END { printf "%.3f", s / NR }') s, $(col "$T/loop1.csv" bytes_sent | awk '{ s += $1 } END { printf "%.2f", s / NR / 1e6 }') MB sent"
fi
if has 3; then
  for i in 1 2 3; do
    sp=$(free_port)
    pp=$(free_port)
    python3 bench/delay_proxy.py "$pp" "$sp" "$((RTT_MS / 2))" "$RATE" &
    PIDS+=($!)
    declare "ARGS_$i=--listen 127.0.0.1:$sp --announce 127.0.0.1:$pp"
  done
  sleep 0.5
  read -r rate samples secs <<<"$(swarm_run wan)"
  unset ARGS_1 ARGS_2 ARGS_3
  printf "  %-34s %8s samples/s  (%d samples in %.1f s)  ratio %.2f\n" "3 peers, ${RTT_MS} ms RTT, ${RATE} Mbit/s" \
    "$rate" "$samples" "$secs" "$(awk -v a="$rate" -v b="$single" 'BEGIN { print a / b }')"
  echo "    per step (peer 1): matchmaking $(col "$T/wan1.csv" matchmaking_s | awk '{ s += $1 } END { printf "%.2f", s / NR }') s, all-reduce $(col "$T/wan1.csv" allreduce_s | awk '{ s += $1 } END { printf "%.3f", s / NR }') s"
fi

if has 4; then
  echo "== 4. averaging rounds, 3 peers on loopback"
  ./build/avg_bench
fi

if has 5; then
  echo "== 5. Byzantine peers: 4 peers (one attacking), 24 steps of >= 32 samples (micro-batches of 4), final eval loss"
  BYZ="--dim 64 --ffn 160 --layers 2 --heads 4 --seqlen 48 --lr 3e-3 --seed 5 --eval-windows 16 -t 1"
  byz_run() {  # byz_run TAG AGGREGATOR MODE -> final eval loss of peer 1
    local pids=() p mode
    for p in 1 2 3 4; do
      mode=none
      [ $p = 4 ] && mode=$3
      $ENGINE train --data "$CORPUS" $BYZ $SWARM --matchmaking-time 0.4 --progress-period 0.2 --run "byz-$1" \
        --steps 24 --batch 4 --target-batch 32 --aggregator "$2" --byzantine "$mode" -o "$T/$1$p.gguf" \
        2>"$T/$1$p.err" &
      pids+=($!)
      PIDS+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || true; done
    col "$T/${1}1.csv" eval_loss | tail -1
  }
  honest=$(byz_run honest centered-clip none)
  printf "  %-12s %-14s %10s %8s\n" attacker aggregator "eval loss" "vs honest"
  printf "  %-12s %-14s %10.4f %8s\n" none centered-clip "$honest" "-"
  for mode in sign-flip scale random delayed; do
    l=$(byz_run "c-$mode" centered-clip "$mode")
    printf "  %-12s %-14s %10.4f %+7.1f%%\n" "$mode" centered-clip "$l" "$(awk -v a="$l" -v b="$honest" 'BEGIN { print 100 * (a - b) / b }')"
  done
  l=$(byz_run m-sign-flip mean sign-flip)
  printf "  %-12s %-14s %10s %+7.1f%%\n" sign-flip mean "$l" "$(awk -v a="$l" -v b="$honest" 'BEGIN { print 100 * (a - b) / b }')"
fi
