#!/usr/bin/env bash
# Distributed inference on 127.0.0.1 with stories260K (5 blocks): a DHT node
# and servers with spans 0:2, 2:5 and 0:5. Greedy swarm generation equals
# local generation token for token; after SIGKILL of the server in use at
# ~20 tokens the output is still identical; a server without cache is routed
# around; every process is reaped.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/swarm_lib.bash"
need_shared
MODEL=$SHARED/models/stories260K.gguf
gen() { timeout 60 "$ENGINE" generate -m "$MODEL" --temp 0 --ids -t 1 "$@"; }

LOCAL40=$(gen -n 40 2>/dev/null)
LOCAL60=$(gen -n 60 -p "Once upon a time" 2>/dev/null)
CHAT_IN=$'Once upon a time\nThe cat'
LOCALCHAT=$(timeout 60 "$ENGINE" chat -m "$MODEL" --temp 0 -n 20 -t 1 <<<"$CHAT_IN" 2>/dev/null)
[ -n "$LOCAL40" ] && [ -n "$LOCAL60" ] && [ -n "$LOCALCHAT" ] || die "local generation failed"

start_dht
# Announced throughputs are fixed so the route does not depend on how busy the
# machine is while the servers measure themselves: the whole-model server c wins.
start_server a --blocks 0:2 --throughput 50
start_server b --blocks 2:5 --throughput 50
start_server c --blocks 0:5 --step-delay 40 --verbose --throughput 5000
check "servers announce their spans" grep -q "online, blocks 0:5" "$TMP/c.out"

OUT=$(gen -n 40 --swarm --initial-peers "$DHT_ADDR" --verbose 2>"$TMP/gen1.err")
check "swarm greedy == local greedy (40 tokens)" [ "$OUT" = "$LOCAL40" ]
check "route goes through the 0:5 server" grep -q "0:5@${SRV_ADDR[c]}" "$TMP/gen1.err"

# A client whose own file is quantize's default (embedding Q4_0, head Q8_0) keeps
# those tables locally and runs the blocks on the F32 servers.
"$ENGINE" quantize -m "$MODEL" -o "$TMP/q.gguf" --calib "$SHARED/data/stories260K-calib.txt" --nsamples 4 --seqlen 64 >/dev/null 2>&1
OUTQ=$(timeout 60 "$ENGINE" generate -m "$TMP/q.gguf" --model-name stories260K --temp 0 --ids -t 1 -n 20 \
       --swarm --initial-peers "$DHT_ADDR" 2>"$TMP/genq.err")
check "swarm client with Q4_0 embedding, Q8_0 head" [ "$(wc -w <<<"$OUTQ")" -ge 20 ]

# Kill the server in use after 20 tokens; the client re-routes through 0:2 -> 2:5.
base=$(wc -l <"$TMP/c.err")
gen -n 60 -p "Once upon a time" --swarm --initial-peers "$DHT_ADDR" --verbose >"$TMP/gen2.out" 2>"$TMP/gen2.err" &
GEN=$!
PIDS+=($GEN)
for _ in $(seq 300); do
  pos=$(tail -n +$((base + 1)) "$TMP/c.err" | sed -n 's/.*step: position //p' | tail -1)
  [ -n "$pos" ] && [ "$pos" -ge 24 ] && break
  sleep 0.05
done
{ kill -9 "${SRV_PID[c]}"; wait "${SRV_PID[c]}"; } 2>/dev/null
check "victim was killed mid-generation (at position ${pos:-?})" [ -n "$pos" ] && [ "$pos" -lt 60 ]
wait "$GEN"
check "generation survives SIGKILL and finishes" [ $? -eq 0 ]
check "output after the kill == local greedy (60 tokens)" [ "$(cat "$TMP/gen2.out")" = "$LOCAL60" ]
check "client re-routed around the dead server" grep -q "recovered in" "$TMP/gen2.err"
grep "route\|recovered\|failed" "$TMP/gen2.err" | sed 's/^/   /'

# A server with (almost) no cache is routed around although one hop is cheaper.
start_server d --blocks 0:5 --cache-tokens 2
OUT=$(gen -n 40 --swarm --initial-peers "$DHT_ADDR" --verbose 2>"$TMP/gen3.err")
check "swarm greedy == local with a cacheless server present" [ "$OUT" = "$LOCAL40" ]
check "the cacheless server is not on the route" bash -c "! grep -q '${SRV_ADDR[d]}' '$TMP/gen3.err'"
check "the route is 0:2 -> 2:5" grep -q "0:2@${SRV_ADDR[a]}.*2:5@${SRV_ADDR[b]}" "$TMP/gen3.err"

OUT=$(timeout 60 "$ENGINE" chat -m "$MODEL" --temp 0 -n 20 -t 1 --initial-peers "$DHT_ADDR" <<<"$CHAT_IN" 2>/dev/null)
check "chat --initial-peers == local chat (two turns)" [ "$OUT" = "$LOCALCHAT" ]

# f16 on the wire: check that greedy ids survive the rounding on this model.
OUT=$(gen -n 40 --swarm --initial-peers "$DHT_ADDR" --wire-dtype f16 2>/dev/null)
check "f16 hidden states: same greedy ids" [ "$OUT" = "$LOCAL40" ]

# Clean shutdown: SIGTERM announces offline and exits 0.
for s in a b d; do kill -TERM "${SRV_PID[$s]}"; done
for s in a b d; do
  for _ in $(seq 50); do kill -0 "${SRV_PID[$s]}" 2>/dev/null || break; sleep 0.1; done
  wait "${SRV_PID[$s]}"
  check "server $s exits 0 on SIGTERM" [ $? -eq 0 ]
done
expect_fail "no servers left: clear error" "no server for blocks" \
  timeout 30 "$ENGINE" generate -m "$MODEL" -n 4 --temp 0 --swarm --initial-peers "$DHT_ADDR" --give-up 2
finish
