#!/usr/bin/env bash
# A few `engine dht` processes on 127.0.0.1: bootstrap, put on one / get from
# another, dictionary values, peers listing, a killed node, a garbage-sending
# peer cut off, a wrong swarm refused, clean shutdown on SIGTERM.
# Usage: net_dht_basic.sh ENGINE SHARED_DIR
set -u
ENGINE=$1
T=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; for f in "$T"/*.err; do echo "--- $f" >&2; tail -5 "$f" >&2; done; exit 1; }

# start_node NAME [ARGS...]: starts a node, waits for its address, sets ADDR.
start_node() {
  local name=$1; shift
  "$ENGINE" dht --listen 127.0.0.1:0 --rpc-timeout 1000 "$@" >"$T/$name.out" 2>"$T/$name.err" &
  PIDS+=($!)
  for _ in $(seq 100); do
    ADDR=$(sed -n 's/.*others join with --initial-peers //p' "$T/$name.out")
    [ -n "$ADDR" ] && return 0
    kill -0 "${PIDS[-1]}" 2>/dev/null || fail "node $name exited early"
    sleep 0.1
  done
  fail "node $name did not print its address"
}
wait_log() {  # wait_log FILE PATTERN
  for _ in $(seq 100); do grep -q "$2" "$1" && return 0; sleep 0.1; done
  fail "'$2' not in $1"
}
dht() { timeout 20 "$ENGINE" dht "$@" --rpc-timeout 1000; }

start_node n0 --republish-interval 1; A0=$ADDR; P0=${PIDS[-1]}
start_node n1 --initial-peers "$A0" --republish-interval 1; A1=$ADDR
start_node n2 --initial-peers "$A1" --republish-interval 1; A2=$ADDR; P2=${PIDS[-1]}
start_node n3 --initial-peers "$A0" --republish-interval 1; A3=$ADDR
wait_log "$T/n3.err" "joined the swarm"
wait_log "$T/n0.err" "peer joined"

# Plain values: put through one node, get through each of the others.
out=$(dht put greeting "hello swarm" --initial-peers "$A1") || fail "put: $out"
echo "$out" | grep -q "stored on [1-9]" || fail "put output: $out"
for a in "$A0" "$A2" "$A3"; do
  v=$(dht get greeting --initial-peers "$a") || fail "get via $a"
  [ "$v" = "hello swarm" ] || fail "get via $a returned '$v'"
done
dht get no-such-key --initial-peers "$A0" 2>/dev/null && fail "missing key was found"

# Dictionary values merge across writers.
dht put servers --subkey s1 one --initial-peers "$A0" >/dev/null || fail "put s1"
dht put servers --subkey s2 two --initial-peers "$A3" >/dev/null || fail "put s2"
v=$(dht get servers --initial-peers "$A2" | sort | tr '\n' ' ')
[ "$v" = "s1=one s2=two " ] || fail "dictionary get returned '$v'"

# The routing table of a node.
dht peers --initial-peers "$A0" | grep -q "knows [1-9]" || fail "peers"

# A peer speaking garbage is cut off; the node keeps serving.
port=${A0##*:}
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'GET / HTTP/1.1\r\n\r\n' >&3
wait_log "$T/n0.err" "cut off"
exec 3>&-
[ "$(dht get greeting --initial-peers "$A0")" = "hello swarm" ] || fail "node stopped serving after garbage"

# A client of another swarm is refused with a reason.
err=$(dht get greeting --initial-peers "$A0" --swarm other 2>&1) && fail "other swarm was served"
echo "$err" | grep -q "swarm mismatch" || fail "no swarm mismatch reason: $err"
# Bad input gets a clear error.
err=$(dht get greeting --initial-peers "nonsense" 2>&1) && fail "bad address accepted"
echo "$err" | grep -q "error:" || fail "bad address message: $err"

# Kill the bootstrap node: the value is still found through the others.
kill -9 "$P0"; wait "$P0" 2>/dev/null
sleep 1.5
[ "$(dht get greeting --initial-peers "$A2")" = "hello swarm" ] || fail "value lost with n0"
wait_log "$T/n1.err" "peer left"

# SIGTERM: a clean exit.
kill -TERM "$P2"
for _ in $(seq 50); do kill -0 "$P2" 2>/dev/null || break; sleep 0.1; done
kill -0 "$P2" 2>/dev/null && fail "node did not stop on SIGTERM"
wait "$P2"; rc=$?
[ $rc -eq 0 ] || fail "node exited $rc on SIGTERM"
grep -q "stopped" "$T/n2.err" || fail "no shutdown message"
echo "net_dht_basic: ok"
