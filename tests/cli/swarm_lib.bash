# (Not named *.sh: CMake registers every tests/cli/*.sh but lib.sh as a test.)
# Helpers for the swarm tests (sourced after lib.sh): start `engine dht` and
# `engine serve` on 127.0.0.1 with ephemeral ports, read their addresses from
# their output, wait with bounds, and kill + reap every process on exit.
PIDS=()
reap() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$TMP"
}
trap reap EXIT
die() {
  echo "FAIL: $*"
  for f in "$TMP"/*.err; do [ -f "$f" ] && { echo "--- $f"; tail -5 "$f"; }; done
  exit 1
}
# wait_for FILE PATTERN [TRIES]: polls (0.1 s) until PATTERN appears in FILE.
wait_for() {
  local f=$1 pat=$2 tries=${3:-200}
  for _ in $(seq "$tries"); do grep -q -- "$pat" "$f" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}
start_dht() {  # [ARGS...] -> DHT_ADDR
  "$ENGINE" dht --listen 127.0.0.1:0 "$@" >"$TMP/dht.out" 2>"$TMP/dht.err" &
  PIDS+=($!)
  wait_for "$TMP/dht.out" "others join with" || die "dht node did not start"
  DHT_ADDR=$(sed -n 's/.*others join with --initial-peers //p' "$TMP/dht.out")
}
# start_server NAME ARGS... -> SRV_PID[NAME]; waits until it is online.
declare -A SRV_PID SRV_ADDR
start_server() {
  local name=$1
  shift
  "$ENGINE" serve -m "$MODEL" --initial-peers "$DHT_ADDR" --listen 127.0.0.1:0 -t 1 "$@" \
    >"$TMP/$name.out" 2>"$TMP/$name.err" &
  SRV_PID[$name]=$!
  PIDS+=($!)
  wait_for "$TMP/$name.out" "serve: online" || die "server $name did not come online"
  SRV_ADDR[$name]=$(sed -n 's/.*listening on //p' "$TMP/$name.out")
}

# Training swarms: background processes by name (PEER_PID[NAME] is the engine itself,
# so a SIGKILL reaches it), waited for with bounds, and their CSV logs.
declare -A PEER_PID
# wait_peers NAME...: each exits 0 within 240 s (killed and failed otherwise).
wait_peers() {
  local rc=0 n
  for n in "$@"; do
    local p=${PEER_PID[$n]}
    for _ in $(seq 2400); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null
    wait "$p" || { echo "process $n exited with $?"; tail -5 "$TMP/$n.err"; rc=1; }
  done
  return $rc
}
# col FILE NAME: the values of a CSV column, one per line (rows where it is set).
col() { awk -F, -v n="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == n) c = i; next } c && $c != "" { print $c }' "$1"; }
last_eval() { col "$1" eval_loss | tail -1; }
# within A B R: |A - B| <= R * B
within() { awk -v a="$1" -v b="$2" -v r="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= r * b) }'; }
