#!/usr/bin/env bash
# Fine-tuning throughput through the swarm against local fine-tuning (issue 7):
# deep-ptune with the same seed, batches and steps, locally and with the blocks
# on two servers (first half, second half) on 127.0.0.1. Training tokens/s come
# from each run's CSV log (scored tokens / step seconds, held-out evaluation
# excluded). Prints ratios measured in one run, not verdicts.
# Usage: bench/swarm_finetune.sh [ENGINE] [SHARED]
#   models: stories260K (dim 64, 5 blocks) and a synthetic dim-512, 8-block f16
#   model with stories260K's vocabulary; THREADS=2 for the local run and each
#   server (a chain computes one hop at a time); STEPS=10, batch 4 x 64 tokens.
set -euo pipefail
cd "$(dirname "$0")/.."
ENGINE=${1:-./engine}
SHARED=${2:-../shared}
THREADS=${THREADS:-2}
STEPS=${STEPS:-10}
DATA=$SHARED/data/stories260K-calib.txt
source scripts/procs.bash
# tok/s of a run: Σ tokens / Σ seconds over the step rows of its CSV.
tps() { awk -F, 'NR > 1 && $6 > 0 { t += $6; s += $7 } END { printf "%.0f", t / s }' "$1"; }

mkdir -p build/bench
MID=build/bench/stories-vocab-d512-l8.gguf
[ -f "$MID" ] || $ENGINE init-model --dim 512 --layers 8 --heads 8 --vocab 512 --vocab-from "$SHARED/models/stories260K.gguf" \
  --type f16 --seed 1 -o "$MID" >/dev/null 2>&1

$ENGINE dht --listen 127.0.0.1:0 >"$T/dht.out" 2>"$T/dht.err" &
PIDS+=($!)
wait_line "$T/dht.out" "others join with"
PEER=$(sed -n 's/.*others join with --initial-peers //p' "$T/dht.out")

printf '%-28s %12s %12s %8s   %s\n' model local_tok/s swarm_tok/s ratio route
for MODEL in "$SHARED/models/stories260K.gguf" "$MID"; do
  name=$(basename "$MODEL" .gguf)
  NL=$($ENGINE info -m "$MODEL" | sed -n 's/.*layers \([0-9]*\),.*/\1/p')
  half=$((NL / 2))
  for span in "0:$half" "$half:$NL"; do
    $ENGINE serve -m "$MODEL" --initial-peers "$PEER" --listen 127.0.0.1:0 -t "$THREADS" --blocks "$span" \
      --throughput 100 >"$T/$name.$span.out" 2>"$T/$name.$span.err" &
    PIDS+=($!)
    wait_line "$T/$name.$span.out" "serve: online"
  done
  ft="$ENGINE finetune -m $MODEL --data $DATA --mode deep-ptune --prefix 8 --steps $STEPS --batch 4 --seqlen 64 \
    --lr 1e-2 --seed 3 -t $THREADS"
  $ft -o "$T/local.gguf" 2>"$T/local.err"
  $ft -o "$T/swarm.gguf" --swarm --initial-peers "$PEER" 2>"$T/swarm.err"
  l=$(tps "$T/local.csv")
  s=$(tps "$T/swarm.csv")
  same=$(paste -d, "$T/local.csv" "$T/swarm.csv" | awk -F, 'NR > 1 && $2 != $9 { d++ } END { print d ? "loss differs" : "same losses" }')
  printf '%-28s %12s %12s %7.2fx   0:%s | %s:%s (%s)\n' "$name" "$l" "$s" "$(awk -v a="$s" -v b="$l" 'BEGIN { print a / b }')" "$half" "$half" "$NL" "$same"
done
