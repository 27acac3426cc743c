#!/usr/bin/env bash
# make demo: the main job on a fresh machine. With MODEL=path.gguf it runs that
# model; without, it makes a small random-weight model with `engine init-model`
# and generates from it (the text is gibberish: the weights are random).
set -euo pipefail
cd "$(dirname "$0")/.."
ENGINE=${ENGINE:-./engine}
PROMPT=${PROMPT:-"Once upon a time"}
N=${N:-48}

if [ -n "${MODEL:-}" ]; then
  [ -f "$MODEL" ] || { echo "demo: MODEL=$MODEL does not exist" >&2; exit 1; }
  echo "== demo: generating from $MODEL"
  $ENGINE info -m "$MODEL" | sed -n '1,4p'
  $ENGINE generate -m "$MODEL" -p "$PROMPT" -n "$N" --temp 0
  exit 0
fi

mkdir -p build/demo
model=build/demo/random-tiny.gguf
if [ ! -f "$model" ]; then
  echo "== demo: making a small random-weight model with engine init-model"
  $ENGINE init-model --dim 256 --ffn 688 --layers 4 --heads 8 --kv-heads 4 --vocab 1024 --type f16 --seed 1 -o "$model"
fi
$ENGINE info -m "$model" | sed -n '1,4p'
echo
echo "== demo: generating from $model"
echo "   NOTE: its weights are RANDOM, so the text is gibberish. To use a real model:"
echo "         MODEL=path/to/model.gguf make demo"
echo
$ENGINE generate -m "$model" -p "$PROMPT" -n "$N" --temp 0.8 --seed 7

# ---- the swarm: a DHT node, three servers splitting the blocks, a chat through them ----
# Everything listens on 127.0.0.1 with ephemeral ports; every process is killed and reaped on exit.
[ "${SWARM:-1}" = 1 ] || exit 0
echo
echo "== demo: a swarm on 127.0.0.1: one DHT node, three servers, a chat through them"
source scripts/procs.bash
$ENGINE dht --listen 127.0.0.1:0 >"$T/dht.out" 2>"$T/dht.err" &
PIDS+=($!)
wait_line "$T/dht.out" "others join with"
PEER=$(sed -n 's/.*others join with --initial-peers //p' "$T/dht.out")
echo "   DHT node at $PEER"
NL=$($ENGINE info -m "$model" | sed -n 's/.*layers \([0-9]*\),.*/\1/p')
HALF=$(( (NL + 1) / 2 ))
declare -A SPID
for s in 1 2 3; do
  # Servers 1 and 2 pick their blocks from what the DHT shows (each takes half);
  # server 3 adds a second copy of the first half, so a failure there can be survived.
  args="--num-blocks $HALF --start-delay 0"
  [ $s = 3 ] && args="--blocks 0:$HALF"
  $ENGINE serve -m "$model" --initial-peers "$PEER" --listen 127.0.0.1:0 -t 1 --step-delay 60 $args \
    >"$T/s$s.out" 2>"$T/s$s.err" &
  SPID[$s]=$!
  PIDS+=($!)
  wait_line "$T/s$s.out" "serve: online"
  echo "   server $s: $(sed -n 's/serve: online, //p' "$T/s$s.out") at $(sed -n 's/.*listening on //p' "$T/s$s.out")"
done
echo "== demo: chatting through the swarm (--verbose shows the route); one server is killed halfway"
printf '%s\n' "$PROMPT" | $ENGINE chat -m "$model" --initial-peers "$PEER" -n "$N" --temp 0 -t 1 --verbose \
  >"$T/chat.out" 2>"$T/chat.err" &
CHAT=$!
PIDS+=($CHAT)
wait_line "$T/chat.err" "route for blocks"
first=$(sed -n 's/.*route for blocks [0-9:]*: 0:[0-9]*@\([0-9.:]*\).*/\1/p' "$T/chat.err" | head -1)
victim=""
for s in 1 2 3; do grep -q "listening on $first" "$T/s$s.out" && victim=$s; done
sleep $(awk "BEGIN{print $N * 0.06 / 2}")
echo "   killing server $victim ($first) with SIGKILL"
kill -9 "${SPID[$victim]}"
wait "${SPID[$victim]}" 2>/dev/null || true
wait "$CHAT" || { cat "$T/chat.err" >&2; echo "demo: the chat failed" >&2; exit 1; }
sed -n 's/^swarm: //p' "$T/chat.err" | sed 's/^/   client: /'
echo "   reply: $(cat "$T/chat.out")"
echo "== demo: the same prompt locally gives the same text:"
printf '%s\n' "$PROMPT" | $ENGINE chat -m "$model" -n "$N" --temp 0 -t 1 2>/dev/null | sed 's/^/   /'
echo "== demo: swarm done; shutting everything down"
