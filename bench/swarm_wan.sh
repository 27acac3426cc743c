#!/usr/bin/env bash
# Swarm generation over an emulated wide-area link: every server sits behind
# bench/delay_proxy.py (50 ms each way, 100 Mbit/s) and announces the proxy's
# address, so each hop of the client costs one 100 ms round trip. Reports
# efficiency = (local compute time + round trips × RTT) / achieved time per token.
# Usage: bench/swarm_wan.sh [ENGINE] [MODEL]   (N tokens, default 16)
set -euo pipefail
cd "$(dirname "$0")/.."
ENGINE=${1:-./engine}
MODEL=${2:-build/bench/bench-2048-f16.gguf}
N=${N:-16}
THREADS=${THREADS:-2}
DELAY_MS=${DELAY_MS:-50}
RATE=${RATE:-100}
source scripts/procs.bash
[ -f "$MODEL" ] || { echo "swarm_wan: $MODEL not found (run bench/run.sh first)" >&2; exit 1; }
NL=$($ENGINE info -m "$MODEL" | sed -n 's/.*layers \([0-9]*\),.*/\1/p')
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
tps() { sed -n 's/.*generated [0-9]* tokens in [0-9.]* s (\([0-9.]*\) tok\/s).*/\1/p' "$1"; }

$ENGINE dht --listen 127.0.0.1:0 >"$T/dht.out" 2>"$T/dht.err" &
PIDS+=($!)
wait_line "$T/dht.out" "others join with"
PEER=$(sed -n 's/.*others join with --initial-peers //p' "$T/dht.out")

$ENGINE generate -m "$MODEL" -n "$N" --temp 0 --ids -t "$THREADS" >"$T/local.ids" 2>"$T/local.err"
LOCAL=$(tps "$T/local.err")
echo "swarm_wan: model $MODEL ($NL blocks), $N tokens, ${DELAY_MS} ms each way, ${RATE} Mbit/s per link"
printf "  %-24s %8s tok/s\n" "local" "$LOCAL"
RTT=$(awk "BEGIN{print 2 * $DELAY_MS / 1000}")
h=$((NL / 2))
id=0
for chain in "0:$NL" "0:$h $h:$NL"; do
  id=$((id + 1))
  SRV=()
  hops=0
  for span in $chain; do
    hops=$((hops + 1))
    sp=$(free_port)
    pp=$(free_port)
    python3 bench/delay_proxy.py "$pp" "$sp" "$DELAY_MS" "$RATE" &
    PIDS+=($!)
    $ENGINE serve -m "$MODEL" --initial-peers "$PEER" --listen "127.0.0.1:$sp" --announce "127.0.0.1:$pp" \
      --bandwidth-mbps "$RATE" -t "$THREADS" --blocks "$span" --model-name "wan$id" \
      >"$T/s$id.$hops.out" 2>"$T/s$id.$hops.err" &
    SRV+=($!)
    PIDS+=($!)
  done
  for j in $(seq "$hops"); do wait_line "$T/s$id.$j.out" "serve: online"; done
  $ENGINE generate -m "$MODEL" -n "$N" --temp 0 --ids -t "$THREADS" --swarm --initial-peers "$PEER" \
    --model-name "wan$id" >"$T/c$id.ids" 2>"$T/c$id.err"
  r=$(tps "$T/c$id.err")
  same=$(cmp -s "$T/c$id.ids" "$T/local.ids" && echo "same ids" || echo "DIFFERENT ids")
  eff=$(awk "BEGIN{print (1 / $LOCAL + $hops * $RTT) / (1 / $r)}")
  printf "  %-24s %8s tok/s  efficiency %.3f  (%s)\n" "chain $chain" "$r" "$eff" "$same"
  for p in "${SRV[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${SRV[@]}"; do wait "$p" 2>/dev/null || true; done
done
