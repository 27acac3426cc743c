#!/usr/bin/env bash
# make demo: the main job on a fresh machine, on 127.0.0.1 with ephemeral ports.
#   1. train a small model from scratch with SWARM pipeline training: a DHT node,
#      2 stages x 2 stage peers, 2 trainers, on a Debian text (fortunes); one stage
#      peer is killed halfway; the loss chart is written beside the model
#   2. generate from it (words of the corpus, not noise)
#   3. quantize it with SpQR and generate again
#   4. serve it from a swarm of three servers, one killed mid-chat, and chat
# With MODEL=path.gguf, steps 1-3 are skipped and that model is served and chatted
# with. Every process started is killed and reaped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ENGINE=${ENGINE:-./engine}
N=${N:-48}
source scripts/procs.bash
mkdir -p build/demo

$ENGINE dht --listen 127.0.0.1:0 --http 127.0.0.1:0 >"$T/dht.out" 2>"$T/dht.err" &
PIDS+=($!)
wait_line "$T/dht.out" "health page at"
PEER=$(sed -n 's/.*others join with --initial-peers //p' "$T/dht.out")
HEALTH=$(sed -n 's/.*health page at //p' "$T/dht.out")

if [ -n "${MODEL:-}" ]; then
  [ -f "$MODEL" ] || { echo "demo: MODEL=$MODEL does not exist" >&2; exit 1; }
  model=$MODEL
  PROMPT=${PROMPT:-"Once upon a time"}
  TEMPLATE=(--temp 0)
  $ENGINE info -m "$model" | sed -n '1,4p'
else
  # ---- 1. SWARM training from scratch ----------------------------------------------
  CORPUS=${CORPUS:-/usr/share/games/fortunes/fortunes}
  [ -f "$CORPUS" ] || { echo "demo: $CORPUS not found (Debian package fortunes: run 'make deps')" >&2; exit 1; }
  STEPS=${TRAIN_STEPS:-240}
  PROMPT=${PROMPT:-"You will"}
  TEMPLATE=(--no-template --temp 0.5 --seed 1)  # greedy loops on a model this small
  model=build/demo/swarm-trained.gguf
  chart=build/demo/swarm-trained-loss.svg
  shape="--dim 64 --layers 2 --heads 4 --seqlen 64 --ctx 128 --lr 1e-2 --seed 1 --steps $STEPS --target-batch ${TARGET:-32}"
  swarm="--swarm --run demo --stages 2 --initial-peers $PEER --listen 127.0.0.1:0 -t 1 --matchmaking-time 0.3
         --progress-period 0.1 --rebalance-period 0"
  echo "== demo 1/4: training a model from scratch with engine train --swarm (SWARM pipeline, 127.0.0.1)"
  echo "   DHT node at $PEER; the model's 2 blocks in 2 stages, 2 stage peers each, 2 trainers on $CORPUS"
  declare -A SP
  for s in 0a 0b 1a 1b; do
    $ENGINE train $shape $swarm --stage "${s:0:1}" --verbose >"$T/stage$s.out" 2>"$T/stage$s.err" &
    SP[$s]=$!
    PIDS+=($!)
  done
  $ENGINE train $shape $swarm --trainer --data "$CORPUS" --batch 8 -o "$model" --plot "$chart" --eval-every 40 \
    --verbose >"$T/trainer1.out" 2>"$T/trainer1.err" &
  T1=$!
  PIDS+=($T1)
  $ENGINE train $shape $swarm --trainer --data "$CORPUS" --batch 8 >"$T/trainer2.out" 2>"$T/trainer2.err" &
  T2=$!
  PIDS+=($T2)
  t0=$(date +%s)
  half=$((STEPS / 2))
  shown=0
  progress() {  # the trainer's latest progress line, every 5 seconds
    local now line
    now=$(date +%s)
    [ $((now - shown)) -ge 5 ] || return 0
    line=$(grep "^train: step" "$T/trainer1.err" 2>/dev/null | tail -1 || true)
    [ -n "$line" ] && echo "   $line"
    shown=$now
  }
  for _ in $(seq 3000); do  # progress every few seconds, until half-way (at most 5 min)
    grep -q "step $half/$STEPS" "$T/trainer1.err" 2>/dev/null && break
    kill -0 $T1 2>/dev/null || break
    progress
    sleep 0.1
  done
  echo "   $(grep "^train: step" "$T/trainer1.err" | tail -1)"
  echo "   killing stage peer 0b (SIGKILL) at step $half: the trainers re-route to the other stage-0 peer"
  kill -9 "${SP[0b]}"
  wait "${SP[0b]}" 2>/dev/null || true
  for _ in $(seq 6000); do
    kill -0 $T1 2>/dev/null || break
    progress
    sleep 0.1
  done
  wait $T1 || { tail -20 "$T/trainer1.err" >&2; echo "demo: the trainer failed" >&2; exit 1; }
  wait $T2 || true
  grep -E "^train: (step $STEPS/|trainer done|done|wrote)" "$T/trainer1.err" | sed 's/^/   /'
  echo "   trained in $(( $(date +%s) - t0 )) s; loss chart: $chart"
  for s in 0a 1a 1b; do wait "${SP[$s]}" 2>/dev/null || true; done

  # ---- 2. generate ---------------------------------------------------------------------
  echo
  echo "== demo 2/4: generating from the trained model (words of the corpus)"
  $ENGINE generate -m "$model" -p "$PROMPT" -n 56 --temp 0.5 --seed 1 -t 1 2>/dev/null | sed 's/^/   /'
  echo

  # ---- 3. SpQR ---------------------------------------------------------------------------
  echo "== demo 3/4: quantizing it with SpQR (3-bit weights, 8-bit head) and generating again"
  qmodel=build/demo/swarm-trained-spqr.gguf
  $ENGINE quantize -m "$model" -o "$qmodel" --calib "$CORPUS" --nsamples 32 --seqlen 64 --wbits 3 \
    --head-type q8_0 -t 1 >"$T/quantize.out" 2>&1 || { tail "$T/quantize.out" >&2; exit 1; }
  { grep -iE "^wrote|bits per" "$T/quantize.out" || true; } | sed 's/^/   /'
  $ENGINE generate -m "$qmodel" -p "$PROMPT" -n 56 --temp 0.5 --seed 1 -t 1 2>/dev/null | sed 's/^/   /'
  echo
  model=$qmodel
fi

# ---- 4. the swarm: three servers splitting the blocks, a chat through them ----------------
echo "== demo 4/4: serving $model from a swarm of three servers; a chat through them"
echo "   (the swarm's health page, live in a browser while the demo runs: $HEALTH)"
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
echo "   chatting through the swarm (--verbose shows the route); one server is killed halfway"
printf '%s\n' "$PROMPT" | $ENGINE chat -m "$model" --initial-peers "$PEER" -n "$N" -t 1 --verbose \
  "${TEMPLATE[@]}" >"$T/chat.out" 2>"$T/chat.err" &
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
printf '%s\n' "$PROMPT" | $ENGINE chat -m "$model" -n "$N" -t 1 "${TEMPLATE[@]}" 2>/dev/null | sed 's/^/   /'

echo "== demo: the OpenAI-compatible API through the same swarm (engine api --swarm; docs/api.md)"
$ENGINE api -m "$model" --swarm --initial-peers "$PEER" --listen 127.0.0.1:0 -t 1 >"$T/api.out" 2>"$T/api.err" &
PIDS+=($!)
wait_line "$T/api.out" "api: ready"
API=$(sed -n 's/.*listening on //p' "$T/api.out")
echo "   curl $API/v1/completions -d '{\"prompt\": \"$PROMPT\", \"max_tokens\": $N, ...}'"
curl -s "$API/v1/completions" -H 'Content-Type: application/json' \
  -d "{\"prompt\": \"$PROMPT\", \"max_tokens\": $N, \"temperature\": 0.5, \"seed\": 1}" |
  python3 -c 'import json, sys; d = json.load(sys.stdin); print("   text:", d["choices"][0]["text"].strip()); print("   usage:", d["usage"])'
echo "   the health page's view of the swarm ($HEALTH""api/v1/state; the killed server stays listed"
echo "   until its DHT records expire, 60 s after its last announcement):"
curl -s "${HEALTH}api/v1/state" | python3 -c '
import json, sys
d = json.load(sys.stdin)
for m in d["models"]:
    on = [s for s in m["servers"] if s.get("state") == "online"]
    print("   model %s: %d blocks, %d servers online, gaps %s" % (m["name"], m["n_blocks"], len(on), m["gaps"] or "none"))'
echo "== demo: done; shutting everything down"
