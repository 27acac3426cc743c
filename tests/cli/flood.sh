#!/usr/bin/env bash
# A server under attack (docs/protocol.md, "What an attacker can cost a
# server"): `engine serve` on stories260K with low limits, flooded from other
# loopback addresses (127.0.0.N) by tests/cli/flood_attacker.py with held
# connections, an oversized frame, slow-loris, garbage and buffers filled with
# frames that never complete. Meanwhile an honest client at 127.0.0.1 still
# generates the right text; the server's peak RSS stays under the bound the
# limits imply; afterwards an attacker's address is refused at once (backoff).
# (Many sessions from one peer/address: tests/unit/net BoundedBlockServerTest.)
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/swarm_lib.bash"
need_shared
MODEL=$SHARED/models/stories260K.gguf
PY=/usr/bin/python3
[ -x "$PY" ] || { echo "SKIP: no $PY"; exit 77; }
ATTACKER="$(dirname "$0")/flood_attacker.py"
gen() { timeout 90 "$ENGINE" generate -m "$MODEL" --temp 0 --ids -t 1 "$@"; }

# Loopback addresses other than 127.0.0.1 must be usable as sources (Linux: all of 127/8).
"$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.2", 0))' 2>/dev/null ||
  { echo "SKIP: cannot bind 127.0.0.2"; exit 77; }

LOCAL40=$(gen -n 40 2>/dev/null)
[ -n "$LOCAL40" ] || die "local generation failed"

# Limits set low so the bound means something: unfinished frames of 1 MiB, at
# most 4 MiB of them per address and 12 MiB in all, while the attacker tries
# to leave 128 of them (128 MiB) unfinished.
FRAME_KIB=1024
MAX_CONNS=256
PENDING_MIB=12
start_dht
start_server s --blocks 0:5 --throughput 50 --cache-tokens 512 --max-conns $MAX_CONNS --max-conns-per-ip 32 \
  --max-frame-kib $FRAME_KIB --max-pending-per-ip 4 --max-pending $PENDING_MIB --frame-timeout 3 --backoff 30
PID=${SRV_PID[s]}
ADDR=${SRV_ADDR[s]}
kib() { sed -n "s/^$1:[[:space:]]*\([0-9]*\) kB/\1/p" "/proc/$PID/status"; }
BASE=$(kib VmHWM)

# The bound from the documented limits: the unfinished frames' cap, a 64 KiB
# read area per connection (x2 for the allocator's slack), and 32 MiB for the
# honest client's sessions, their cache, the frames it sends and threads.
BOUND=$((BASE + PENDING_MIB * 1024 + MAX_CONNS * 128 + 32 * 1024))

timeout 60 "$PY" "$ATTACKER" attack "$ADDR" 8 $((FRAME_KIB * 1024)) >"$TMP/attack.out" 2>"$TMP/attack.err" &
ATT=$!
PIDS+=($ATT)
sleep 1  # let the flood start before the honest client
OUT=$(gen -n 40 --swarm --initial-peers "$DHT_ADDR" 2>"$TMP/gen.err")
check "honest client during the flood: swarm greedy == local greedy" [ "$OUT" = "$LOCAL40" ]
wait "$ATT"
check "attacker ran to the end" [ $? -eq 0 ]
sed 's/^/   /' "$TMP/attack.out"
check "server survived the flood" kill -0 "$PID"

PEAK=$(kib VmHWM)
echo "   VmHWM: $((BASE / 1024)) MiB before the attack, $((PEAK / 1024)) MiB after; bound $((BOUND / 1024)) MiB"
check "peak RSS within the bound the limits imply" [ "$PEAK" -le "$BOUND" ]

# 127.0.0.3 sent the oversized frame: refused at accept with a reason.
PROBE=$(timeout 30 "$PY" "$ATTACKER" probe "$ADDR" 127.0.0.3)
echo "   probe from 127.0.0.3: $PROBE"
check "the attacker's address is backed off" grep -q "backed off" <<<"$PROBE"
# 127.0.0.20 announced more unfinished frames than its address may have.
PROBE=$(timeout 30 "$PY" "$ATTACKER" probe "$ADDR" 127.0.0.20)
check "the buffer-filling address is backed off" grep -q "backed off" <<<"$PROBE"
check "the server logged whom it cut off and why" grep -q "cut off 127.0.0" "$TMP/s.err"

OUT=$(gen -n 40 --swarm --initial-peers "$DHT_ADDR" 2>/dev/null)
check "honest client after the flood: swarm greedy == local greedy" [ "$OUT" = "$LOCAL40" ]
finish
