#!/usr/bin/env bash
# Servers that choose their own blocks (no --blocks) on stories260K: they
# cover every block; when the only server of some blocks dies, one of the
# others rebalances onto them; when that one is killed in the middle of
# rebalancing, another takes its place, and generation through the swarm
# again equals local generation.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/swarm_lib.bash"
need_shared
MODEL=$SHARED/models/stories260K.gguf
LOCAL=$(timeout 60 "$ENGINE" generate -m "$MODEL" -n 30 --temp 0 --ids -t 1 2>/dev/null)
gen() { timeout 60 "$ENGINE" generate -m "$MODEL" -n 30 --temp 0 --ids -t 1 --swarm --initial-peers "$DHT_ADDR" "$@"; }
span_of() { sed -n 's/.*online, blocks //p' "$TMP/$1.out" | tail -1; }
FAST="--announce-interval 1 --rebalance-interval 1 --start-delay 0"

start_dht
# Started one at a time, each sees the others: three 2-block servers cover 5 blocks.
for s in a b c; do start_server "$s" --num-blocks 2 --throughput 100 $FAST; done
check "auto spans: a=$(span_of a) b=$(span_of b) c=$(span_of c) cover blocks 0..4" \
  [ "$(span_of a) $(span_of b) $(span_of c)" = "0:2 2:4 3:5" ]
check "swarm over self-chosen spans == local" [ "$(gen 2>/dev/null)" = "$LOCAL" ]
for s in a b c; do { kill -9 "${SRV_PID[$s]}"; wait "${SRV_PID[$s]}"; } 2>/dev/null; done

# A strong server on 2:5 makes three 3-block servers stack on 0:3.
start_server q --blocks 2:5 --throughput 1000 $FAST
for s in p r t; do start_server "$s" --num-blocks 3 --throughput 100 $FAST; done
check "three auto servers stack on 0:3 next to the strong 2:5" \
  [ "$(span_of p) $(span_of r) $(span_of t)" = "0:3 0:3 0:3" ]
# Blocks 3 and 4 lose their only server: someone rebalances; kill it as it moves.
{ kill -9 "${SRV_PID[q]}"; wait "${SRV_PID[q]}"; } 2>/dev/null
mover=""
for _ in $(seq 300); do
  for s in p r t; do grep -q "rebalancing" "$TMP/$s.err" && { mover=$s; break 2; }; done
  sleep 0.05
done
[ -n "$mover" ] || die "nobody rebalanced after the 2:5 server died"
{ kill -9 "${SRV_PID[$mover]}"; wait "${SRV_PID[$mover]}"; } 2>/dev/null
check "server $mover killed while rebalancing" true
# Its entries expire (3 s); then another server moves onto 2:5.
second=""
for _ in $(seq 250); do
  for s in p r t; do
    [ "$s" = "$mover" ] && continue
    [ "$(span_of "$s")" = "2:5" ] && { second=$s; break 2; }
  done
  sleep 0.1
done
check "another server ($second) rebalanced onto 2:5" [ -n "$second" ]
check "every block is covered again: swarm == local" [ "$(gen --give-up 20 2>"$TMP/gen.err")" = "$LOCAL" ]
finish
