#!/usr/bin/env bash
# 30 `engine dht` processes on 127.0.0.1 bootstrapped from one. Values put
# through random nodes are found through every node; after SIGKILL of a third
# of the nodes (the bootstrap node among them) and a republish round they are
# still found through every survivor, and through a node that joins late.
# Usage: net_dht_swarm.sh ENGINE SHARED_DIR   (N=30 KEYS=8 by default)
set -u
ENGINE=$1
N=${N:-30}
KEYS=${KEYS:-8}
T=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
RANDOM=4242  # reproducible choice of nodes

start_node() {  # start_node I [ARGS...] -> ADDRS[I], NODE_PID[I]
  local i=$1; shift
  "$ENGINE" dht --listen 127.0.0.1:0 --rpc-timeout 1000 --republish-interval 3 --refresh-interval 10 "$@" \
    >"$T/n$i.out" 2>"$T/n$i.err" &
  NODE_PID[$i]=$!
  PIDS+=($!)
}
wait_addr() {
  local i=$1
  for _ in $(seq 150); do
    ADDRS[$i]=$(sed -n 's/.*others join with --initial-peers //p' "$T/n$i.out")
    [ -n "${ADDRS[$i]}" ] && return 0
    kill -0 "${NODE_PID[$i]}" 2>/dev/null || { tail "$T/n$i.err" >&2; fail "node $i exited"; }
    sleep 0.1
  done
  fail "node $i did not print its address"
}
wait_joined() {
  for _ in $(seq 150); do grep -q "joined the swarm" "$T/n$1.err" && return 0; sleep 0.1; done
  tail "$T/n$1.err" >&2
  fail "node $1 did not join"
}
dht() { timeout 30 "$ENGINE" dht "$@" --rpc-timeout 1000 2>>"$T/clients.err"; }

declare -a ADDRS NODE_PID ALIVE
start_node 0; wait_addr 0
for i in $(seq 1 $((N - 1))); do start_node "$i" --initial-peers "${ADDRS[0]}"; done
for i in $(seq 1 $((N - 1))); do wait_addr "$i"; wait_joined "$i"; done
for i in $(seq 0 $((N - 1))); do ALIVE[$i]=1; done
echo "net_dht_swarm: $N nodes up"

for k in $(seq 1 "$KEYS"); do
  via=$((RANDOM % N))
  dht put "key$k" "value$k" --initial-peers "${ADDRS[$via]}" >/dev/null || fail "put key$k via node $via"
done

check_all() {  # every key through every live node (or the given ones)
  local bad=0
  for i in "$@"; do
    for k in $(seq 1 "$KEYS"); do
      v=$(dht get "key$k" --initial-peers "${ADDRS[$i]}") || v="(not found)"
      [ "$v" = "value$k" ] || { echo "node $i: key$k -> $v" >&2; bad=$((bad + 1)); }
    done
  done
  return $bad
}
live() { for i in $(seq 0 $((N - 1))); do [ "${ALIVE[$i]}" = 1 ] && echo "$i"; done; }

check_all $(live) || fail "values not found before the kills"
echo "net_dht_swarm: $KEYS keys found through all $N nodes"

# SIGKILL a third, the bootstrap node first.
victims=(0)
while [ ${#victims[@]} -lt $((N / 3)) ]; do
  v=$((RANDOM % N))
  [[ " ${victims[*]} " == *" $v "* ]] || victims+=("$v")
done
for v in "${victims[@]}"; do kill -9 "${NODE_PID[$v]}"; wait "${NODE_PID[$v]}" 2>/dev/null; ALIVE[$v]=0; done
echo "net_dht_swarm: killed ${victims[*]}"
sleep 7  # two republish rounds
check_all $(live) || fail "values lost after killing a third"
echo "net_dht_swarm: all keys still found through the $(live | wc -l) survivors"

# A late joiner, bootstrapped from a survivor.
first=$(live | head -1)
start_node $N --initial-peers "${ADDRS[$first]}"; wait_addr $N; wait_joined $N; ALIVE[$N]=1
check_all $N || fail "late joiner cannot find the values"
echo "net_dht_swarm: late joiner finds every key"

# Clean shutdown of every survivor on SIGTERM.
for i in $(live); do kill -TERM "${NODE_PID[$i]}"; done
for i in $(live); do
  for _ in $(seq 100); do kill -0 "${NODE_PID[$i]}" 2>/dev/null || break; sleep 0.1; done
  kill -0 "${NODE_PID[$i]}" 2>/dev/null && fail "node $i ignored SIGTERM"
  wait "${NODE_PID[$i]}" || fail "node $i exited non-zero on SIGTERM"
done
echo "net_dht_swarm: ok"
